"""Load weights exported by torch.onnx.export back into the PyTorch module they came from.

The exporter keeps parameter names where a parameter is an initializer as it is (convolutions, embeddings,
LayerNorm, Gemm), and gives others a generated name (onnx::...): GroupNorm's weight and bias (a Mul and an Add
of [C, 1, 1] after InstanceNormalization) and Linear weights used by MatMul (transposed). Those are matched by
order: the order in which the module calls its GroupNorm and Linear layers (forward hooks on one example run)
is the order of their nodes in the graph. Used to continue from a trained embedded model (tiny-t2i's components
for the video model) when only its ONNX files are kept.
"""
import onnx
import torch
import torch.nn as nn
from onnx import numpy_helper


def load_onnx_weights(module, run, onnx_path, prefix="", parts=("",), sources=None):
    """module: the nn.Module (state_dict keys without `prefix`); run(): one forward of the exported wrapper;
    parts: the state keys the file must give (prefixes; e.g. a VAE encoder file gives encoder.* and quant_conv.*);
    sources: a dict to fill with state key -> (initializer name, "matmul" when stored transposed, else "").
    Returns the number of tensors loaded; raises if anything does not match."""
    m = onnx.load(onnx_path)
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    state = module.state_dict()
    loaded = {}
    for name, arr in inits.items():
        if name.startswith(prefix) and name[len(prefix):] in state:
            loaded[name[len(prefix):]] = torch.from_numpy(arr.copy())
            if sources is not None:
                sources[name[len(prefix):]] = (name, "")
    calls = []
    hooks = [mod.register_forward_hook(lambda mod, i, o: calls.append(mod))
             for mod in module.modules() if isinstance(mod, (nn.GroupNorm, nn.Linear))]
    with torch.no_grad():
        run()
    for h in hooks:
        h.remove()
    names = {id(mod): n for n, mod in module.named_modules()}
    want = []  # (state key, kind) in call order, for what the names did not give
    for mod in calls:
        n = names[id(mod)]
        if isinstance(mod, nn.GroupNorm) and f"{n}.weight" not in loaded:
            want += [(f"{n}.weight", "mul"), (f"{n}.bias", "add")]
        elif isinstance(mod, nn.Linear) and f"{n}.weight" not in loaded:
            want.append((f"{n}.weight", "matmul"))
    got = []  # generated initializers in node order
    after_norm = False
    seen = set()
    for node in m.graph.node:
        if node.op_type == "InstanceNormalization":
            after_norm = True
            continue
        for x in node.input:
            if x in inits and x.startswith("onnx::") and x not in seen:
                a = inits[x]
                if node.op_type == "MatMul" and a.ndim == 2:
                    got.append((x, "matmul"))
                elif node.op_type in ("Mul", "Add") and after_norm and a.ndim == 3:
                    got.append((x, node.op_type.lower()))
                else:
                    continue
                seen.add(x)
        if node.op_type == "Add" and after_norm and any(x in seen for x in node.input):
            after_norm = False
    if [k for _, k in want] != [k for _, k in got]:
        raise ValueError(f"{onnx_path}: {len(want)} unnamed weights in the module, {len(got)} in the graph, or their order differs")
    for (key, kind), (x, _) in zip(want, got):
        a = torch.from_numpy(inits[x].copy())
        loaded[key] = a.t().contiguous() if kind == "matmul" else a.reshape(-1)
        if sources is not None:
            sources[key] = (x, kind)
    missing = [k for k in state if k not in loaded and k.startswith(tuple(parts))]
    if missing:
        raise ValueError(f"{onnx_path}: no value for {missing[:5]}")
    for k, v in loaded.items():
        if tuple(v.shape) != tuple(state[k].shape):
            raise ValueError(f"{onnx_path}: {k} has shape {tuple(v.shape)}, the module {tuple(state[k].shape)}")
    module.load_state_dict(loaded, strict=False)
    return len(loaded)
