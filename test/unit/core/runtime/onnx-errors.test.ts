/** onnxruntime's error texts, as seen from onnxruntime-node 1.30, turned into one line in our words. */
import { describe, expect, it } from 'vitest';
import { cleanOrtText, loadReason, runReason } from '../../../../src-main/core/runtime/onnx';

const CPP = /onnxruntime::|\.(?:cc|h|cpp):\d+|onnxruntime_src|\[ONNXRuntimeError\]|std::/;

const IR = "Load model from /tmp/p/unet/model.onnx failed:/onnxruntime_src/onnxruntime/core/graph/model.cc:187 onnxruntime::Model::Model(onnx::ModelProto&&, const PathString&, const IOnnxRuntimeOpSchemaRegistryList*, const onnxruntime::logging::Logger&, const onnxruntime::ModelOptions&) Unsupported model IR version: 99, max supported IR version: 11\n";
const RESHAPE = "Non-zero status code returned while running Reshape node. Name:'/up1/norm1/Reshape_1' Status Message: /onnxruntime_src/onnxruntime/core/providers/cpu/tensor/reshape_helper.h:91 onnxruntime::ReshapeHelper::ReshapeHelper(const onnxruntime::TensorShape&, onnxruntime::TensorShapeVector&, bool) input_shape_size == requested_shape_size was false. The input tensor cannot be reshaped to the requested shape. Input shape:{2,8,3136}, requested shape:{2,128,1,1}\n";
const BROADCAST = "Non-zero status code returned while running Add node. Name:'/up1/Add_3' Status Message: /onnxruntime_src/onnxruntime/core/providers/cpu/math/element_wise_ops.h:583 void onnxruntime::BroadcastIterator::Append(ptrdiff_t, ptrdiff_t) axis == 1 || axis == largest was false. Attempting to broadcast an axis by a dimension other than 1. 8 by 14\n";
const RAW = "tensorprotoutils.cc:1469 ValidateEmbeddedTensorProtoDataSizeAndShape Initializer 'onnx::MatMul_570': raw_data size (2322 bytes) does not match expected size from shape and data type (16384 bytes)";
const OPSET = "Load model from /tmp/p/unet/model.onnx failed:/onnxruntime_src/onnxruntime/core/graph/model_load_utils.h:46 void onnxruntime::model_load_utils::ValidateOpsetForDomain(const std::unordered_map<std::__cxx11::basic_string<char>, int>&, const onnxruntime::logging::Logger&, bool, const string&, int) ONNX Runtime only *guarantees* support for models stamped with official released onnx opset versions. Opset 99 is under development and support for this is limited.";
const GRAPH = "Load model from /tmp/p/unet/model.onnx failed:/onnxruntime_src/onnxruntime/core/graph/graph.cc:1555 void onnxruntime::Graph::InitializeStateFromModelFileGraphProto() This is an invalid model. Graph output (nothing) does not exist in the graph.";
const DIMS = 'Got invalid dimensions for input: timestep for the following indices\n index: 0 Got: 2 Expected: 38\n Please fix either the inputs/outputs or the model.';
const NESTED = "Exception during initialization: /onnxruntime_src/onnxruntime/core/optimizer/initializer.cc:51 onnxruntime::Initializer::Initializer(const onnx::TensorProto&, const std::filesystem::__cxx11::path&) [ONNXRuntimeError] : 1 : FAIL : tensorprotoutils.cc:1180 UnpackTensor data type 99 is not supported";

describe("onnxruntime's text, cleaned", () => {
  it.each([IR, RESHAPE, BROADCAST, RAW, OPSET, GRAPH, DIMS, NESTED])('one line, no C++ source paths or signatures, no model path: %#', (raw) => {
    for (const s of [cleanOrtText(raw), loadReason(raw), runReason(raw)]) {
      expect(s).not.toMatch(CPP);
      expect(s).not.toContain('\n');
      expect(s).not.toContain('/tmp/p/unet');
      expect(s.length).toBeLessThanOrEqual(300);
    }
  });
  it('keeps what a user can act on', () => {
    expect(loadReason(IR)).toBe('its ONNX version is not supported (Unsupported model IR version: 99, max supported IR version: 11)');
    expect(runReason(RESHAPE)).toBe("its Reshape node '/up1/norm1/Reshape_1' failed: The input tensor cannot be reshaped to the requested shape. Input shape:{2,8,3136}, requested shape:{2,128,1,1}");
    expect(runReason(BROADCAST)).toBe("its Add node '/up1/Add_3' failed: Attempting to broadcast an axis by a dimension other than 1. 8 by 14");
    expect(loadReason(RAW)).toBe("a weight's stored data does not match its shape (Initializer 'onnx::MatMul_570': raw_data size (2322 bytes) does not match expected size from shape and data type (16384 bytes))");
    expect(loadReason(GRAPH)).toBe('the graph is not valid: This is an invalid model. Graph output (nothing) does not exist in the graph.');
    expect(runReason(DIMS)).toBe('Got invalid dimensions for input: timestep for the following indices index: 0 Got: 2 Expected: 38');
    expect(loadReason(NESTED)).toBe('the graph is not valid: data type 99 is not supported');
    expect(loadReason('Load model from x.onnx failed:Protobuf parsing failed.')).toBe('the file is not a valid ONNX model (truncated or corrupted)');
  });
  it('tensor names with :: (onnx::Add_12) are not C++', () => {
    expect(cleanOrtText("Node input 'onnx::Add_12' is not a graph input, initializer, or output of a previous node.")).toBe("Node input 'onnx::Add_12' is not a graph input, initializer, or output of a previous node.");
  });
  it('long texts are cut at 240 characters', () => {
    expect(cleanOrtText('word '.repeat(200)).length).toBeLessThanOrEqual(240);
  });
});
