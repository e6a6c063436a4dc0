// Copies Swagger UI (from npm, not a CDN) next to the dashboard so /docs works offline.
import { copyFileSync, mkdirSync } from "node:fs";

const out = "../src/pelbiot/static/swagger";
mkdirSync(out, { recursive: true });
for (const file of ["swagger-ui-bundle.js", "swagger-ui.css"]) {
  copyFileSync(`node_modules/swagger-ui-dist/${file}`, `${out}/${file}`);
}
