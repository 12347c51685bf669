import { mount } from 'svelte';
import App from './App.svelte';
import { pickHost } from './host';

const { api } = pickHost();
mount(App, { target: document.getElementById('app')!, props: { api } });
