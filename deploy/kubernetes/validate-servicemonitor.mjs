// Validates ServiceMonitor objects (JSON documents, one per line on standard input) against the
// Prometheus Operator's monitoring.coreos.com/v1 schema, as the npm package
// @kubernetes-models/prometheus-operator generates it from the operator's API types.
// Usage: node validate-servicemonitor.mjs MODELS_DIR < objects.jsonl
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const models = process.argv[2];
const module = join(models, "node_modules/@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor.js");
const { ServiceMonitor } = await import(pathToFileURL(module).href);
const lines = readFileSync(0, "utf8").split("\n").filter((l) => l.trim() !== "");
let failed = 0;
for (const line of lines) {
  const object = JSON.parse(line);
  try {
    new ServiceMonitor(object).validate();
    console.log(`ok: ServiceMonitor ${object.metadata?.namespace}/${object.metadata?.name}`);
  } catch (e) {
    failed++;
    console.error(`ServiceMonitor ${object.metadata?.name}: ${e.message}`);
  }
}
process.exit(failed === 0 && lines.length > 0 ? 0 : 1);
