/** GitHub Action entry (bundled to dist/action.js). Not built yet. */
process.stderr.write("delta-audit action: not implemented yet\n");
process.exitCode = 3;
