/**
 * Which adapters and checkpoints to audit: expand the `adapter` / `finetuned` patterns
 * (paths or globs, one per line, `!pattern` excludes) in the workspace, then, with
 * `changed-only`, keep those whose files the pull request touched.
 */
import { readdirSync, realpathSync, statSync, type Dirent } from "node:fs";
import { basename, dirname, join, relative, resolve, sep } from "node:path";
import { InputError } from "../errors";
import { isDirectorySync } from "../io/fs-util";

export interface AuditSubject {
  kind: "adapter" | "finetuned";
  /** absolute folder */
  dir: string;
  /** folder relative to the workspace, with forward slashes (what the PR file list uses) */
  rel: string;
  /** the file annotations point at, relative to the workspace */
  configFile: string;
}

/** Folders a `**` never descends into: dependency trees and VCS metadata are never subjects. */
const SKIP_DIRS = new Set([".git", "node_modules", ".venv", "__pycache__"]);
/** A runaway `**` over a huge tree stops here instead of hanging the job. */
export const MAX_GLOB_VISITS = 100_000;

const ADAPTER_MARKERS = new Set(["adapter_config.json", "adapter_model.safetensors"]);
const FINETUNED_MARKERS = new Set(["config.json", "model.safetensors", "model.safetensors.index.json"]);

function hasMagic(p: string): boolean {
  return /[*?[]/.test(p);
}

/** One path segment of a glob → RegExp (`*`, `?`, `[...]`; dotfiles only when the segment starts with '.'). */
function segmentRegExp(seg: string): RegExp {
  let re = "";
  for (let i = 0; i < seg.length; i++) {
    const c = seg[i]!;
    if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else if (c === "[") {
      const close = seg.indexOf("]", i + 1);
      if (close < 0) re += "\\[";
      else {
        const body = seg.slice(i + 1, close).replace(/^!/, "^").replace(/\\/g, "\\\\");
        re += `[${body}]`;
        i = close;
      }
    } else re += c.replace(/[.+^${}()|\\]/g, "\\$&");
  }
  return new RegExp(`^${seg.startsWith(".") ? "" : "(?!\\.)"}${re}$`);
}

/** Expand one glob (relative to `root`) to the absolute paths it matches, files and folders. */
export function expandGlob(root: string, pattern: string): string[] {
  const segs = pattern.replace(/\\/g, "/").split("/").filter((s) => s !== "" && s !== ".");
  const out = new Set<string>();
  let visits = 0;
  const list = (dir: string): Dirent[] => {
    if (++visits > MAX_GLOB_VISITS) throw new InputError(`pattern '${pattern}' visits more than ${MAX_GLOB_VISITS} folders; make it narrower`, "input 'adapter'");
    try {
      return readdirSync(dir, { withFileTypes: true });
    } catch {
      return [];
    }
  };
  const walk = (dir: string, i: number): void => {
    if (i === segs.length) {
      out.add(dir);
      return;
    }
    const seg = segs[i]!;
    if (seg === "**") {
      walk(dir, i + 1);
      for (const e of list(dir)) {
        if (e.isDirectory() && !SKIP_DIRS.has(e.name) && !e.name.startsWith(".")) walk(join(dir, e.name), i);
      }
      return;
    }
    if (!hasMagic(seg)) {
      const next = join(dir, seg);
      try {
        statSync(next);
        walk(next, i + 1);
      } catch {
        /* no match */
      }
      return;
    }
    const re = segmentRegExp(seg);
    for (const e of list(dir)) {
      if (!re.test(e.name)) continue;
      if (i + 1 < segs.length && !e.isDirectory()) continue;
      walk(join(dir, e.name), i + 1);
    }
  };
  walk(resolve(root), 0);
  return [...out].sort();
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

function toRel(root: string, p: string): string {
  return relative(root, p).split(sep).join("/") || ".";
}

export interface FindSubjectsOptions {
  /**
   * Every including pattern must match at least one subject folder. Set when nothing narrows the
   * subjects afterwards (`changed-only` off, or not a pull request): a pattern that matches
   * nothing is then a typo or a moved folder, and a run that audits nothing because of it would
   * look like a clean pass.
   */
  requireMatches?: boolean;
}

/**
 * Expand `patterns` of one kind into subjects. A literal path that is not a subject is an
 * input error (a typo should not pass silently); a glob skips non-matching folders, and with
 * `requireMatches` a glob that matches no subject folder at all is an input error too.
 */
export function findSubjects(root: string, kind: AuditSubject["kind"], patterns: string[], options: FindSubjectsOptions = {}): AuditSubject[] {
  const markers = kind === "adapter" ? ADAPTER_MARKERS : FINETUNED_MARKERS;
  const configName = kind === "adapter" ? "adapter_config.json" : "config.json";
  const dirs = new Set<string>();
  const excluded = new Set<string>();
  for (const raw of patterns) {
    const negate = raw.startsWith("!");
    const pattern = negate ? raw.slice(1) : raw;
    const matches = hasMagic(pattern) ? expandGlob(root, pattern) : [resolve(root, pattern)];
    let matched = 0;
    for (const m of matches) {
      const dir = isFile(m) && markers.has(basename(m)) ? dirname(m) : m;
      const ok = isDirectorySync(dir) && isFile(join(dir, configName));
      if (!ok) {
        if (!hasMagic(pattern) && !negate) {
          throw new InputError(`'${pattern}' is not a ${kind === "adapter" ? "PEFT adapter folder (no adapter_config.json)" : "checkpoint folder (no config.json)"}`, `input '${kind}'`);
        }
        continue;
      }
      const rel = toRel(root, dir);
      // a pull request can add symlinks: a subject must really live inside the workspace
      const real = toRel(realpathSync(root), realpathSync(dir));
      if (rel === ".." || rel.startsWith("../") || real === ".." || real.startsWith("../")) {
        throw new InputError(`'${pattern}' points outside the workspace`, `input '${kind}'`);
      }
      (negate ? excluded : dirs).add(dir);
      matched++;
    }
    if (options.requireMatches && !negate && matched === 0) {
      throw new InputError(`pattern '${pattern}' matches no ${kind === "adapter" ? "PEFT adapter folder (with adapter_config.json)" : "checkpoint folder (with config.json)"} in the workspace`, `input '${kind}'`);
    }
  }
  return [...dirs]
    .filter((d) => !excluded.has(d))
    .sort()
    .map((dir) => {
      const rel = toRel(root, dir);
      return { kind, dir, rel, configFile: rel === "." ? configName : `${rel}/${configName}` };
    });
}

/**
 * Whether `path`, lexically inside `root`, resolves (through symlinks a pull request can add)
 * to somewhere outside it. A missing path does not escape.
 */
export function linksOutside(path: string, root: string): boolean {
  const lexical = relative(resolve(root), resolve(path));
  if (lexical === ".." || lexical.startsWith(`..${sep}`)) return false; // given outside on purpose
  let real: string;
  try {
    real = realpathSync(path);
  } catch {
    return false;
  }
  const rel = relative(realpathSync(root), real);
  return rel === ".." || rel.startsWith(`..${sep}`) || resolve(rel) === rel;
}

/**
 * Refuse a model folder in the workspace any of whose files is a symlink out of it: a pull
 * request could point adapter_config.json, tokenizer.json or a weights file at a runner secret
 * (read, and bits of it quoted back) or at /dev/zero (read forever). `label` names the folder
 * in the error, workspace-relative. Folders outside the workspace were given on purpose (a
 * Hub cache) and are not ours to judge.
 */
export function checkFolderFiles(dir: string, label: string, root: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    if (linksOutside(join(dir, name), root)) {
      throw new InputError("is a symlink to outside the workspace; refusing to read it", label === "." ? name : `${label}/${name}`);
    }
  }
}

/** checkFolderFiles for an audited subject. */
export function checkSubjectFiles(subject: AuditSubject, root: string): void {
  checkFolderFiles(subject.dir, subject.rel, root);
}

/**
 * Keep the subjects the pull request touched: any changed file inside the subject's folder.
 * A change to the policy config re-audits everything, since every verdict may change.
 */
export function filterChanged(subjects: AuditSubject[], changedFiles: string[], configRel?: string): AuditSubject[] {
  if (configRel && changedFiles.includes(configRel)) return subjects;
  return subjects.filter((s) => s.rel === "." ? changedFiles.length > 0 : changedFiles.some((f) => f.startsWith(`${s.rel}/`)));
}
