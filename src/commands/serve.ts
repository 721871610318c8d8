import type { Command } from "commander";
import { BackendError } from "../errors";

/** Placeholder: `delta-audit serve` is not built yet. */
export function register(program: Command): void {
  program
    .command("serve")
    .description("(not yet implemented)")
    .allowUnknownOption()
    .action(() => {
      throw new BackendError("'serve' is not implemented yet");
    });
}
