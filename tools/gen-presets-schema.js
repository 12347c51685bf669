// Regenerates presets/schema.json from the recipe schema (src-main/core/quant/recipe.ts): npm run presets:schema
import { writeFileSync } from 'node:fs';
import { register } from 'tsx/esm/api';

register();
const { recipeJsonSchema, presetsDir } = await import('../src-main/core/quant/recipe.ts');
writeFileSync(`${presetsDir()}/schema.json`, JSON.stringify(recipeJsonSchema(), null, 2) + '\n');
