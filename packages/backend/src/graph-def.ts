// @peft/core's graph description (GraphSpec; no dependency on core) written as TensorFlow's
// SavedModel protocol buffer: a SavedModel holding one MetaGraphDef (tag `serve`) whose GraphDef
// has the nodes. Only the fields libtensorflow needs to load and run the graph are written.
//
// Field numbers from tensorflow/core/protobuf/saved_model.proto, meta_graph.proto and
// tensorflow/core/framework/{graph,node_def,attr_value,tensor,tensor_shape,versions,types}.proto.

export type GraphDtype = 'float32' | 'int32' | 'bool';

export type GraphAttr =
  | { type: GraphDtype }
  | { i: number }
  | { f: number }
  | { b: boolean }
  | { s: string }
  | { shape: (number | null)[] | null }
  | { tensor: { dtype: 'float32' | 'int32'; shape: number[]; values: number[] } };

export interface GraphNode {
  name: string;
  op: string;
  inputs: string[];
  attrs: Record<string, GraphAttr>;
}

export interface GraphSpec {
  readonly nodes: readonly GraphNode[];
  readonly inputs: readonly { name: string; dtype: GraphDtype }[];
  readonly outputs: readonly string[];
}

/** DataType enum values (types.proto). */
const DATA_TYPE: Record<GraphDtype, number> = { float32: 1, int32: 3, bool: 10 };

const VARINT = 0;
const LENGTH_DELIMITED = 2;
const FIXED32 = 5;

/** GraphDef producer version: the graph uses no op newer than this (TensorFlow 2.x). */
const GRAPH_PRODUCER = 1000;

/** Protocol buffer wire format, appended field by field. */
class ProtoWriter {
  private readonly parts: Uint8Array[] = [];
  private size = 0;

  private push(bytes: Uint8Array): void {
    this.parts.push(bytes);
    this.size += bytes.length;
  }

  private varint(value: number): void {
    if (!Number.isSafeInteger(value)) throw new Error(`graph: ${value} is not an integer protobuf can hold`);
    let rest = BigInt.asUintN(64, BigInt(value)); // negative int64 values take ten bytes, as protobuf writes them
    const bytes: number[] = [];
    while (rest >= 0x80n) {
      bytes.push(Number(rest & 0x7fn) | 0x80);
      rest >>= 7n;
    }
    bytes.push(Number(rest));
    this.push(Uint8Array.from(bytes));
  }

  private tag(field: number, wireType: number): void {
    this.varint((field << 3) | wireType);
  }

  integer(field: number, value: number): void {
    this.tag(field, VARINT);
    this.varint(value);
  }

  boolean(field: number, value: boolean): void {
    this.integer(field, value ? 1 : 0);
  }

  float(field: number, value: number): void {
    this.tag(field, FIXED32);
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setFloat32(0, value, true);
    this.push(bytes);
  }

  bytes(field: number, value: Uint8Array): void {
    this.tag(field, LENGTH_DELIMITED);
    this.varint(value.length);
    this.push(value);
  }

  string(field: number, value: string): void {
    this.bytes(field, new TextEncoder().encode(value));
  }

  message(field: number, write: (writer: ProtoWriter) => void): void {
    const inner = new ProtoWriter();
    write(inner);
    this.bytes(field, inner.finish());
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.size);
    let offset = 0;
    for (const part of this.parts) {
      out.set(part, offset);
      offset += part.length;
    }
    return out;
  }
}

/** TensorShapeProto: dim (2) of size (1), -1 for an unknown size; unknown_rank (3). */
function writeShape(writer: ProtoWriter, shape: readonly (number | null)[] | null): void {
  if (shape === null) {
    writer.boolean(3, true);
    return;
  }
  for (const size of shape) writer.message(2, (dim) => dim.integer(1, size ?? -1));
}

/** AttrValue: s (2), i (3), f (4), b (5), type (6), shape (7), tensor (8). */
function writeAttr(writer: ProtoWriter, attr: GraphAttr): void {
  if ('type' in attr) writer.integer(6, DATA_TYPE[attr.type]);
  else if ('i' in attr) writer.integer(3, attr.i);
  else if ('f' in attr) writer.float(4, attr.f);
  else if ('b' in attr) writer.boolean(5, attr.b);
  else if ('s' in attr) writer.string(2, attr.s);
  else if ('shape' in attr) writer.message(7, (shape) => writeShape(shape, attr.shape));
  else {
    // TensorProto: dtype (1), tensor_shape (2), tensor_content (4: little-endian values)
    const { dtype, shape, values } = attr.tensor;
    const count = shape.reduce((a, b) => a * b, 1);
    if (values.length !== count) throw new Error(`graph: a constant of shape [${shape}] given ${values.length} values`);
    writer.message(8, (tensor) => {
      tensor.integer(1, DATA_TYPE[dtype]);
      tensor.message(2, (s) => writeShape(s, shape));
      const data = dtype === 'float32' ? new Float32Array(values) : new Int32Array(values);
      tensor.bytes(4, new Uint8Array(data.buffer));
    });
  }
}

/**
 * saved_model.pb of a SavedModel whose one MetaGraphDef (tags: `serve`) holds `spec`'s nodes:
 * SavedModel { saved_model_schema_version (1), meta_graphs (2) }, MetaGraphDef { meta_info_def (1)
 * { tags (4) }, graph_def (2) }, GraphDef { node (1), versions (4) { producer (1) } }, NodeDef
 * { name (1), op (2), input (3), attr (5): map entries key (1), value (2) }.
 */
export function savedModelProto(spec: GraphSpec): Uint8Array {
  const writer = new ProtoWriter();
  writer.integer(1, 1);
  writer.message(2, (meta) => {
    meta.message(1, (info) => info.string(4, 'serve'));
    meta.message(2, (graph) => {
      for (const node of spec.nodes) {
        graph.message(1, (def) => {
          def.string(1, node.name);
          def.string(2, node.op);
          for (const input of node.inputs) def.string(3, input);
          for (const [key, value] of Object.entries(node.attrs)) {
            def.message(5, (entry) => {
              entry.string(1, key);
              entry.message(2, (attr) => writeAttr(attr, value));
            });
          }
        });
      }
      graph.message(4, (versions) => versions.integer(1, GRAPH_PRODUCER));
    });
  });
  return writer.finish();
}
