// check.mjs loads shardcache's status page in headless Chromium (Debian's
// /usr/bin/chromium driven by playwright-core), waits for the page to render
// /v1/status twice, reads the numbers it shows and writes a screenshot.
//
// Usage: node check.mjs URL SCREENSHOT.png
// With STATUS_FIXTURE=file.json the page's /v1/status requests are answered
// with that file instead (to render states the broker cannot produce yet).
// Prints one JSON object on stdout:
//   {topics: {name: {live_keys, tombstones, live_bytes, high_watermark,
//             partitions: {p: {live_keys, tombstones, live_bytes, high_watermark, log_start_offset}}}},
//    groups: {name: {members, live_backlog, lag, partitions: {"topic/p": live_backlog}}},
//    raft_groups: [{raft_group_id, term, applied_index}],
//    cluster: {nodes: [{id, state, self}], raft_groups: [{raft_group_id, replicas, leader, term}]},
//    summary: {...}, node_ready, errors: [...]}
// Numbers are parsed from the text shown (live_bytes from data-value, since the
// page shows it in KiB/MiB). Exit status 1 on any page error.
import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const [url, shot] = process.argv.slice(2);
if (!url || !shot) {
  console.error("usage: node check.mjs URL SCREENSHOT.png");
  process.exit(2);
}

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "shardcache-chromium-"));
const errors = [];
let context;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1400, height: 1000 },
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
    ],
    timeout: 60000,
  });
  const page = context.pages()[0] || (await context.newPage());
  page.on("pageerror", (e) => errors.push("page error: " + e.message));
  page.on("console", (m) => { if (m.type() === "error") errors.push("console: " + m.text()); });
  page.on("requestfailed", (r) => errors.push("request failed: " + r.url() + " " + (r.failure()?.errorText || "")));
  // Anything not served by the broker itself would be an external dependency.
  const origin = new URL(url).origin;
  page.on("request", (r) => { if (!r.url().startsWith(origin) && !r.url().startsWith("data:")) errors.push("external request: " + r.url()); });

  if (process.env.STATUS_FIXTURE) {
    const fixture = fs.readFileSync(process.env.STATUS_FIXTURE, "utf8");
    await page.route("**/v1/status", (route) => route.fulfill({ status: 200, contentType: "application/json", body: fixture }));
  }
  const resp = await page.goto(url, { waitUntil: "load", timeout: 30000 });
  if (!resp || !resp.ok()) throw new Error("GET " + url + ": HTTP " + (resp && resp.status()));
  // Two renders: the first load and one automatic refresh (proves polling).
  await page.waitForFunction(() => Number(document.body.dataset.loaded || 0) >= 2, null, { timeout: 30000 });
  // The cluster section renders from /v1/cluster on its own.
  await page.waitForFunction(() => Number(document.body.dataset.clusterLoaded || 0) >= 1, null, { timeout: 30000 });

  const shown = await page.evaluate(() => {
    const n = (s) => Number(String(s).replace(/[^0-9-]/g, ""));
    const field = (row, f) => row.querySelector(`[data-field="${f}"]`);
    const topics = {};
    for (const row of document.querySelectorAll("tr.topic")) {
      const t = { partitions: {} };
      for (const f of ["live_keys", "tombstones", "high_watermark"]) t[f] = n(field(row, f).textContent);
      t.live_bytes = n(field(row, "live_bytes").dataset.value);
      t.live_bytes_text = field(row, "live_bytes").textContent;
      topics[row.dataset.topic] = t;
    }
    for (const row of document.querySelectorAll("tr.part")) {
      const p = {};
      for (const f of ["live_keys", "tombstones", "high_watermark", "log_start_offset"]) p[f] = n(field(row, f).textContent);
      p.live_bytes = n(field(row, "live_bytes").dataset.value);
      topics[row.dataset.topic].partitions[row.dataset.partition] = p;
    }
    const groups = {};
    for (const g of document.querySelectorAll(".group")) {
      const out = { partitions: {} };
      out.members = n(g.querySelector('.meta [data-field="members"]').dataset.value);
      out.live_backlog = n(g.querySelector('.meta [data-field="live_backlog"]').textContent);
      out.lag = n(g.querySelector('.meta [data-field="lag"]').textContent);
      for (const s of g.querySelectorAll(".shard")) {
        out.partitions[s.dataset.topic + "/" + s.dataset.partition] = n(field(s, "live_backlog").textContent);
      }
      groups[g.dataset.group] = out;
    }
    const raftGroups = [...document.querySelectorAll("#raft-body tr[data-raft-group]")].map((r) => ({
      raft_group_id: n(r.dataset.raftGroup), term: n(field(r, "term").textContent), applied_index: n(field(r, "applied_index").textContent),
    }));
    const cluster = {
      nodes: [...document.querySelectorAll("#cluster-nodes-body tr[data-node]")].map((r) => ({
        id: n(r.dataset.node), state: field(r, "state").dataset.value, self: r.dataset.self === "true",
      })),
      raft_groups: [...document.querySelectorAll("#cluster-raft-body tr[data-raft-group]")].map((r) => ({
        raft_group_id: n(r.dataset.raftGroup),
        replicas: field(r, "replicas").dataset.value.split(",").filter((x) => x !== "").map(Number),
        leader: Number(field(r, "leader").dataset.value),
        term: n(field(r, "term").textContent),
      })),
    };
    return {
      topics, groups, raft_groups: raftGroups, cluster,
      summary: {
        topics: n(document.getElementById("sum-topics").textContent),
        live_keys: n(document.getElementById("sum-live-keys").textContent),
      },
      node_ready: document.getElementById("node-ready").textContent.trim() === "ready",
      error_banner: document.getElementById("error").hidden ? "" : document.getElementById("error").textContent,
    };
  });
  await page.screenshot({ path: shot, fullPage: true });
  shown.errors = errors;
  console.log(JSON.stringify(shown));
  if (errors.length || shown.error_banner) process.exitCode = 1;
} catch (e) {
  console.error(String(e && e.stack || e));
  console.log(JSON.stringify({ errors: [...errors, String(e)] }));
  process.exitCode = 1;
} finally {
  if (context) await context.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
