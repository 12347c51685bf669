/**
 * kernels/: every number format the studio compares, as an exact TypeScript reference on typed arrays and as ONNX
 * subgraphs (neutral descriptions, serialized by the engine). Pure TypeScript: no Node, no DOM. See docs/kernels.md.
 */
export * from './minifloat.js';
export * from './half.js';
export * from './layout.js';
export * from './quant.js';
export * from './stats.js';
export * from './storage.js';
export * from './onnx/graph.js';
export * from './onnx/fakequant.js';
export * from './onnx/stats.js';
