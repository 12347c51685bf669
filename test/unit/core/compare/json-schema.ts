/**
 * A small JSON Schema (draft 2020-12) validator for the keywords docs/metrics-schema.json uses, written for the
 * tests so that a produced metrics.json is checked against the documented file itself. An unknown keyword is an
 * error (so a schema can never be half-checked silently).
 */
type Schema = boolean | Record<string, unknown>;

const ANNOTATIONS = new Set(['$schema', '$id', 'title', 'description']);
const KNOWN = new Set([
  ...ANNOTATIONS, 'type', 'properties', 'required', 'additionalProperties', 'propertyNames', 'items', 'enum', 'const', 'anyOf',
  'oneOf', 'allOf', 'minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'minItems', 'maxItems',
]);

function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

function hasType(v: unknown, t: string): boolean {
  if (t === 'integer') return typeof v === 'number' && Number.isInteger(v);
  if (t === 'number') return typeof v === 'number' && Number.isFinite(v);
  if (t === 'object') return typeOf(v) === 'object';
  return typeOf(v) === t;
}

function equal(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Returns the list of violations (empty when valid). */
export function validate(value: unknown, schema: Schema, path = '$'): string[] {
  if (schema === true) return [];
  if (schema === false) return [`${path}: no value is allowed here`];
  const errs: string[] = [];
  for (const k of Object.keys(schema)) if (!KNOWN.has(k)) throw new Error(`validator: unsupported keyword '${k}' at ${path}`);
  const s = schema as Record<string, unknown>;
  if (s.type !== undefined) {
    const types = Array.isArray(s.type) ? (s.type as string[]) : [s.type as string];
    if (!types.some((t) => hasType(value, t))) return [`${path}: expected ${types.join(' or ')}, got ${typeOf(value)}`];
  }
  if (s.enum !== undefined && !(s.enum as unknown[]).some((e) => equal(e, value))) errs.push(`${path}: not one of ${JSON.stringify(s.enum)}`);
  if (s.const !== undefined && !equal(s.const, value)) errs.push(`${path}: expected ${JSON.stringify(s.const)}`);
  if (typeof value === 'number') {
    if (typeof s.minimum === 'number' && value < s.minimum) errs.push(`${path}: ${value} < minimum ${s.minimum}`);
    if (typeof s.maximum === 'number' && value > s.maximum) errs.push(`${path}: ${value} > maximum ${s.maximum}`);
    if (typeof s.exclusiveMinimum === 'number' && value <= s.exclusiveMinimum) errs.push(`${path}: ${value} <= exclusiveMinimum ${s.exclusiveMinimum}`);
    if (typeof s.exclusiveMaximum === 'number' && value >= s.exclusiveMaximum) errs.push(`${path}: ${value} >= exclusiveMaximum ${s.exclusiveMaximum}`);
  }
  if (Array.isArray(value)) {
    if (typeof s.minItems === 'number' && value.length < s.minItems) errs.push(`${path}: fewer than ${s.minItems} items`);
    if (typeof s.maxItems === 'number' && value.length > s.maxItems) errs.push(`${path}: more than ${s.maxItems} items`);
    if (s.items !== undefined) value.forEach((v, i) => errs.push(...validate(v, s.items as Schema, `${path}[${i}]`)));
  }
  if (typeOf(value) === 'object') {
    const obj = value as Record<string, unknown>;
    const props = (s.properties ?? {}) as Record<string, Schema>;
    for (const r of (s.required ?? []) as string[]) if (!(r in obj)) errs.push(`${path}: missing required '${r}'`);
    for (const [k, v] of Object.entries(obj)) {
      if (s.propertyNames !== undefined) errs.push(...validate(k, s.propertyNames as Schema, `${path}{${k}}`));
      if (k in props) errs.push(...validate(v, props[k]!, `${path}.${k}`));
      else if (s.additionalProperties !== undefined) errs.push(...validate(v, s.additionalProperties as Schema, `${path}.${k}`));
    }
  }
  if (s.allOf !== undefined) for (const sub of s.allOf as Schema[]) errs.push(...validate(value, sub, path));
  if (s.anyOf !== undefined && !(s.anyOf as Schema[]).some((sub) => validate(value, sub, path).length === 0)) errs.push(`${path}: matches none of anyOf`);
  if (s.oneOf !== undefined && (s.oneOf as Schema[]).filter((sub) => validate(value, sub, path).length === 0).length !== 1) {
    errs.push(`${path}: does not match exactly one of oneOf`);
  }
  return errs;
}
