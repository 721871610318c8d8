import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);

// src/action.ts
process.stderr.write("delta-audit action: not implemented yet\n");
process.exitCode = 3;
