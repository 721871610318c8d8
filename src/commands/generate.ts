import type { Command } from "commander";
import { BackendError } from "../errors";

/** Placeholder: `delta-audit generate` is not built yet. */
export function register(program: Command): void {
  program
    .command("generate")
    .description("(not yet implemented)")
    .allowUnknownOption()
    .action(() => {
      throw new BackendError("'generate' is not implemented yet");
    });
}
