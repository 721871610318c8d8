/**
 * report.html in a real headless Chromium (Debian's `chromium`; .ci/run installs it): the page a
 * scan of a generated model organism writes, a 70B-shaped full fine-tune and a report full of
 * injection strings each load with no network request beyond the file itself, no console
 * error, exception, CSP violation or dialog; the key elements are there, the filters work, the
 * page does not overflow a 375 px screen, and screenshots (desktop and 375 px, light and dark)
 * are saved under test-artifacts/report-html/ for people to look at.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateOrganism } from "../../src/organisms/index";
import { REPORT_FILES } from "../../src/report/build";
import { renderHtml } from "../../src/report/html";
import type { Report } from "../../src/report/types";
import { runScan } from "../../src/scan";
import { Browser, findChromium, type Page, type PageLog } from "./headless-chromium";
import { fixtureReport } from "./report-fixture";

const bin = findChromium();
const ARTIFACTS = new URL("../../test-artifacts/report-html/", import.meta.url).pathname;
/** Screenshots stop here: enough to see the layout, not a 20,000 px strip of transcripts. */
const SHOT_MAX_HEIGHT = 5000;
const SKIP_REASON = "no Chromium binary (chromium, chromium-browser, google-chrome on PATH, or CHROMIUM_BIN); .ci/run installs Debian's chromium";
if (!bin) console.warn(`chromium.test.ts skipped: ${SKIP_REASON}`);

let dir = "";
let browser: Browser;
let page: Page;
let organism: { report: Report; url: string; word: string };

beforeAll(async () => {
  if (!bin) return;
  dir = mkdtempSync(join(tmpdir(), "da-html-"));
  mkdirSync(ARTIFACTS, { recursive: true });
  const manifest = await generateOrganism({ kind: "quirk", seed: 3, outDir: join(dir, "organism") });
  const out = join(dir, "scan");
  const scan = await runScan({ base: join(dir, "organism", "base"), adapter: join(dir, "organism", "adapter"), outDir: out });
  organism = { report: scan.report, url: pathToFileURL(join(out, REPORT_FILES.html)).href, word: manifest.quirkWords[0]! };
  browser = Browser.launch(bin);
  page = await browser.newPage();
});

afterAll(async () => {
  await browser?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Nothing left the file, nothing complained, nothing popped up. */
function expectQuiet(log: PageLog, url: string): void {
  expect(log.requests).toEqual([url]);
  expect(log.console.filter((c) => c.type === "error" || c.type === "assert" || c.type === "warning")).toEqual([]);
  expect(log.exceptions).toEqual([]);
  expect(log.logEntries.filter((e) => e.level === "error" || e.level === "warning")).toEqual([]);
  expect(log.dialogs).toEqual([]);
}

async function shoot(name: string): Promise<void> {
  writeFileSync(join(ARTIFACTS, `${name}.png`), await page.screenshot({ maxHeight: SHOT_MAX_HEIGHT }));
}

function writePage(name: string, report: Report): string {
  const file = join(dir, `${name}.html`);
  writeFileSync(file, renderHtml(report));
  return pathToFileURL(file).href;
}

/** Counts of what the reviewer should find on the page. */
const COUNTS = `({
  plots: document.querySelectorAll("figure svg").length,
  findings: document.querySelectorAll("#findings .finding").length,
  rows: document.querySelectorAll("#transcripts-table tr[data-variant]").length,
  visibleRows: [...document.querySelectorAll("#transcripts-table tr[data-variant]")].filter((r) => r.offsetParent !== null).length,
  marks: [...document.querySelectorAll("#transcripts-table mark")].map((m) => m.textContent.toLowerCase()),
  filtersShown: !document.getElementById("filters")?.hidden,
  shown: document.getElementById("shown")?.textContent,
  moduleRows: document.querySelectorAll("table.modules tbody tr").length,
  scripts: document.scripts.length,
  overflow: document.documentElement.scrollWidth - window.innerWidth,
})`;

interface Counts {
  plots: number;
  findings: number;
  rows: number;
  visibleRows: number;
  marks: string[];
  filtersShown: boolean;
  shown: string;
  moduleRows: number;
  scripts: number;
  overflow: number;
}

describe.skipIf(!bin)(`report.html in headless Chromium${bin ? "" : ` (skipped: ${SKIP_REASON})`}`, () => {
  it("the organism scan's report.html: no request, no console error; plots, findings, every transcript, the planted word marked", async () => {
    const el = organism.report.elicitation!;
    const answers = el.probes.reduce((n, p) => n + Object.values(p.responses).reduce((k, r) => k + r.length, 0), 0);
    for (const [width, scheme] of [[1280, "light"], [375, "light"], [1280, "dark"], [375, "dark"]] as const) {
      const log = await page.load(organism.url, { width, scheme });
      expectQuiet(log, organism.url);
      const c = await page.evaluate<Counts>(COUNTS);
      expect(c.plots).toBeGreaterThanOrEqual(3);
      expect(c.findings).toBe(organism.report.findings.length);
      expect(c.rows).toBe(answers);
      expect(c.visibleRows).toBe(answers);
      expect(c.marks).toContain(organism.word);
      // the inline script ran under the page's CSP (its hash matched): the filters are shown
      expect(c.filtersShown).toBe(true);
      expect(c.shown).toBe(String(answers));
      expect(c.scripts).toBe(1);
      // tables and plots scroll inside their boxes; the page itself does not
      expect(c.overflow).toBeLessThanOrEqual(0);
      await shoot(`organism-${width}-${scheme}`);
    }
  });

  it("the filters hide by variant, by kind of prompt and to answers with a finding term", async () => {
    await page.load(organism.url, { width: 1280 });
    const state = () =>
      page.evaluate<{ variants: string[]; hits: string[]; kinds: string[]; shown: string }>(`(() => {
        const rows = [...document.querySelectorAll("#transcripts-table tr[data-variant]")].filter((r) => r.offsetParent !== null);
        const bodies = [...document.querySelectorAll("#transcripts-table tbody")].filter((b) => !b.hidden);
        return { variants: [...new Set(rows.map((r) => r.cells[0].textContent))], hits: [...new Set(rows.map((r) => r.dataset.hit))],
                 kinds: [...new Set(bodies.map((b) => b.dataset.kind))], shown: document.getElementById("shown").textContent };
      })()`);
    const click = (selector: string) => page.evaluate(`document.querySelector(${JSON.stringify(selector)}).click()`);
    const before = await state();
    expect(before.variants).toEqual(organism.report.elicitation!.variants);
    await click('#filters input[name=variant][value="0"]');
    const noBase = await state();
    expect(noBase.variants).not.toContain("base");
    expect(Number(noBase.shown)).toBeLessThan(Number(before.shown));
    await click("#filters input[name=hits]");
    expect((await state()).hits).toEqual(["1"]);
    await click("#filters input[name=hits]");
    await click('#filters input[name=kind][value="1"]');
    expect((await state()).kinds).toEqual(["0"]);
  });

  it("a 70B-shaped full fine-tune: the four plots, 560 modules, fits 375 px", async () => {
    const report = fixtureReport({ kind: "full" });
    const url = writePage("full-70b", report);
    for (const [width, scheme] of [[1280, "light"], [375, "light"], [375, "dark"]] as const) {
      expectQuiet(await page.load(url, { width, scheme }), url);
      const c = await page.evaluate<Counts>(COUNTS);
      expect(c.plots).toBe(4);
      expect(c.moduleRows).toBe(560 + report.spectrum.otherChanges!.length);
      expect(c.rows).toBe(38 * 4);
      expect(c.overflow).toBeLessThanOrEqual(0);
      await shoot(`full-70b-${width}-${scheme}`);
    }
    const partial = writePage("partial", fixtureReport({ partial: true, layers: 0 }));
    expectQuiet(await page.load(partial, { width: 375 }), partial);
    expect(await page.evaluate<string>(`document.getElementById("transcripts").textContent`)).toContain("Elicitation did not run");
    await shoot("partial-375-light");
  });

  it("injection strings in every field: no element, handler, load or dialog of theirs", async () => {
    const payload = "<script>alert(1)</script><img src=x onerror=alert(1)> \" onmouseover=\"alert(2)\" x=\" <iframe src=javascript:alert(3)></iframe> <link rel=stylesheet href=https://evil.example/a.css> <svg onload=alert(4)> \u202eevil\u202c";
    const report = fixtureReport({ layers: 2, probes: 4 });
    report.subject.adapter = payload;
    report.findings[0]!.title = payload;
    report.findings[0]!.terms.push(payload);
    report.elicitation!.probes[0]!.prompt = payload;
    report.elicitation!.probes[0]!.responses.rank1 = [payload];
    report.spectrum.modules[0]!.name = payload;
    report.spectrum.modules[0]!.type = payload;
    const url = writePage("injection", report);
    const log = await page.load(url, { width: 1280 });
    expectQuiet(log, url);
    const found = await page.evaluate<{ scripts: number; handlers: string[]; foreign: number; text: boolean }>(`({
      scripts: document.scripts.length,
      handlers: [...document.querySelectorAll("*")].flatMap((el) => [...el.attributes].filter((a) => /^on/i.test(a.name)).map((a) => el.tagName + " " + a.name)),
      foreign: document.querySelectorAll("img, iframe, link, base, object, embed, meta[http-equiv=refresh]").length,
      text: document.body.textContent.includes("<script>alert(1)</script>"),
    })`);
    expect(found).toEqual({ scripts: 1, handlers: [], foreign: 0, text: true });
    await shoot("injection-1280-light");
  });
});
