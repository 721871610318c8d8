import type { Command } from "commander";
import { BackendError } from "../errors";

/** Placeholder: `delta-audit demo` is not built yet. */
export function register(program: Command): void {
  program
    .command("demo")
    .description("(not yet implemented)")
    .allowUnknownOption()
    .action(() => {
      throw new BackendError("'demo' is not implemented yet");
    });
}
