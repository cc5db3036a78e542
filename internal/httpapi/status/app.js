// shardcache status page: polls /v1/status and renders it. Plain DOM, no
// libraries. Every number cell carries data-field (and rows data-topic,
// data-partition, data-group for a consumer group, data-raft-group for a Raft
// group) so tests and scripts can read what is shown.
"use strict";

const REFRESH_MS = 2000;
const HISTORY = 60; // samples kept for the rate sparklines
const history = { produce: [], fetch: [] };
let lastOK = 0;

const nf = new Intl.NumberFormat("en-US");
const num = (n) => nf.format(n);
const $ = (id) => document.getElementById(id);

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (i === 0 ? String(v) : v.toFixed(v < 10 ? 2 : 1)) + " " + units[i];
}

function rate(n) {
  if (n >= 1e6) return (n / 1e6).toFixed(2) + " M/s";
  if (n >= 1e4) return (n / 1e3).toFixed(1) + " k/s";
  return (n >= 100 ? n.toFixed(0) : n.toFixed(1)) + " /s";
}

function duration(s) {
  s = Math.floor(s);
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
  if (d) return d + "d " + h + "h";
  if (h) return h + "h " + m + "m";
  if (m) return m + "m " + (s % 60) + "s";
  return s + "s";
}

// el builds an element: el("td", {class: "num", "data-field": "x"}, "text" | [children]).
function el(tag, attrs, content) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  if (Array.isArray(content)) content.forEach((c) => c && e.append(c));
  else if (content !== undefined && content !== null) e.textContent = content;
  return e;
}

function numCell(field, value, text) {
  return el("td", { class: "num", "data-field": field, "data-value": value }, text === undefined ? num(value) : text);
}

function bar(fraction, hot) {
  const pct = Math.max(0, Math.min(1, fraction || 0)) * 100;
  const fill = el("span", hot ? { class: "hot" } : {});
  fill.style.width = pct.toFixed(1) + "%";
  return el("div", { class: "bar", title: pct.toFixed(1) + "%" }, [fill]);
}

function spark(svg, values) {
  svg.replaceChildren();
  if (values.length < 2) return;
  const max = Math.max(...values, 1);
  const step = 120 / (HISTORY - 1);
  const x0 = 120 - (values.length - 1) * step;
  const pts = values.map((v, i) => (x0 + i * step).toFixed(1) + "," + (27 - (v / max) * 25).toFixed(1));
  const ns = "http://www.w3.org/2000/svg";
  const area = document.createElementNS(ns, "polygon");
  area.setAttribute("points", x0.toFixed(1) + ",28 " + pts.join(" ") + " 120,28");
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", pts.join(" "));
  svg.append(area, line);
}

function renderNode(s) {
  const ready = $("node-ready");
  ready.dataset.state = s.node.ready ? "ready" : "starting";
  ready.textContent = s.node.ready ? "ready" : "starting";
  $("node-id").textContent = s.node.id;
  $("cluster-id").textContent = s.node.cluster_id || "–";
  $("uptime").textContent = duration(s.node.uptime_seconds);
}

function renderSummary(s) {
  let parts = 0, keys = 0, tombs = 0, bytesLive = 0, recs = 0;
  for (const t of s.topics) {
    parts += t.partitions.length; keys += t.live_keys; tombs += t.tombstones;
    bytesLive += t.live_bytes; recs += t.live_records;
  }
  const set = (id, value, text) => { const e = $(id); e.dataset.value = value; e.textContent = text; };
  set("sum-topics", s.topics.length, num(s.topics.length));
  $("sum-partitions").textContent = num(parts) + " partitions (shards)";
  set("sum-live-keys", keys, num(keys));
  $("sum-tombstones").textContent = num(tombs) + " tombstones kept";
  set("sum-live-bytes", bytesLive, bytes(bytesLive));
  $("sum-live-records").textContent = num(recs) + " live records";

  const r = s.rates;
  $("rate-produce").textContent = rate(r.produce_records_per_sec);
  $("rate-produce-bytes").textContent = bytes(Math.round(r.produce_bytes_per_sec)) + "/s · " + num(r.produce_records_total) + " records total";
  $("rate-fetch").textContent = rate(r.fetch_records_per_sec);
  $("rate-fetch-bytes").textContent = bytes(Math.round(r.fetch_bytes_per_sec)) + "/s · " + num(r.fetch_records_total) + " records total";
  for (const [k, v] of [["produce", r.produce_records_per_sec], ["fetch", r.fetch_records_per_sec]]) {
    history[k].push(v);
    if (history[k].length > HISTORY) history[k].shift();
    spark($("spark-" + k), history[k]);
  }
}

// collapsed holds the topics whose partition rows are folded away. Internal
// topics (__consumer_offsets has 50 partitions) start folded; a click on a
// topic row toggles it, and the choice survives refreshes.
const collapsed = new Set();
const seenTopics = new Set();

function toggleTopic(name) {
  if (collapsed.has(name)) collapsed.delete(name); else collapsed.add(name);
  for (const row of document.querySelectorAll("tr.part")) {
    if (row.dataset.topic === name) row.hidden = collapsed.has(name);
  }
}

function renderTopics(s) {
  const body = $("topics-body");
  const rows = [];
  if (s.topics.length === 0) {
    rows.push(el("tr", {}, [el("td", { colspan: 9, class: "empty" }, "no topics yet: produce to one, or create it with any Kafka admin client")]));
  }
  for (const t of s.topics) {
    if (!seenTopics.has(t.name)) {
      seenTopics.add(t.name);
      if (t.name.startsWith("__")) collapsed.add(t.name);
    }
    const folded = collapsed.has(t.name);
    const row = el("tr", { class: "topic", "data-topic": t.name, title: "click to show or hide partitions" }, [
      el("td", {}, (folded ? "▸ " : "▾ ") + t.name),
      el("td", {}, [el("span", { class: "tag " + t.cleanup_policy }, t.cleanup_policy)]),
      numCell("live_keys", t.live_keys),
      numCell("tombstones", t.tombstones),
      numCell("live_bytes", t.live_bytes, bytes(t.live_bytes)),
      numCell("high_watermark", t.high_watermark),
      el("td", {}),
      el("td", {}, t.partitions.length + (t.partitions.length === 1 ? " partition" : " partitions")),
      el("td", {}),
    ]);
    row.addEventListener("click", () => {
      toggleTopic(t.name);
      row.firstChild.textContent = (collapsed.has(t.name) ? "▸ " : "▾ ") + t.name;
    });
    rows.push(row);
    for (const p of t.partitions) {
      const prow = el("tr", { class: "part", "data-topic": t.name, "data-partition": p.partition }, [
        el("td", {}, "partition " + p.partition),
        el("td", {}, p.error ? [el("span", { class: "tag delete", title: p.error }, "unavailable")] : null),
        numCell("live_keys", p.live_keys),
        numCell("tombstones", p.tombstones),
        numCell("live_bytes", p.live_bytes, bytes(p.live_bytes)),
        numCell("high_watermark", p.high_watermark),
        numCell("log_start_offset", p.log_start_offset),
        el("td", {}, [el("span", { class: "tag " + (p.leader ? "leader" : "follower") }, "g" + p.raft_group_id + (p.leader ? " · leader" : " · follower"))]),
        el("td", {}, [bar(t.live_keys ? p.live_keys / t.live_keys : 0)]),
      ]);
      prow.hidden = folded;
      rows.push(prow);
    }
  }
  body.replaceChildren(...rows);
}

function renderGroups(s) {
  const box = $("groups");
  if (s.groups.length === 0) {
    box.replaceChildren(el("p", { class: "empty" }, "no consumer groups: groups appear here once a consumer joins or commits offsets"));
    return;
  }
  const cards = s.groups.map((g) => {
    const max = Math.max(1, ...g.partitions.map((p) => p.live_backlog));
    const members = g.members.length === 0
      ? [el("li", {}, "no members (offsets committed without joining, as Flink does)")]
      : g.members.map((m) => el("li", {}, (m.client_id || m.member_id) + " @ " + (m.client_host || "?") +
          " · " + m.assigned.length + " shard" + (m.assigned.length === 1 ? "" : "s")));
    const shards = g.partitions.map((p) => el("div", { class: "shard", "data-topic": p.topic, "data-partition": p.partition }, [
      el("span", { class: "name", title: "owner: " + (p.owner || "none") + " · committed " + p.committed + " · high watermark " + p.high_watermark }, p.topic + "/" + p.partition),
      bar(p.live_backlog / max, p.live_backlog > 0 && p.live_backlog === max),
      el("span", { class: "v", "data-field": "live_backlog", "data-value": p.live_backlog }, num(p.live_backlog)),
    ]));
    return el("div", { class: "group", "data-group": g.group }, [
      el("h3", {}, [el("span", {}, g.group), el("span", { class: "tag" }, g.state)]),
      el("div", { class: "meta" }, [
        el("span", { "data-field": "members", "data-value": g.members.length }, g.members.length + " member" + (g.members.length === 1 ? "" : "s")),
        " · generation " + g.generation + (g.protocol ? " · " + g.protocol : "") + " · backlog ",
        el("b", { "data-field": "live_backlog", "data-value": g.live_backlog }, num(g.live_backlog)),
        " live records · lag ",
        el("span", { "data-field": "lag", "data-value": g.lag }, num(g.lag)),
      ]),
      el("ul", { class: "members" }, members),
      ...shards,
    ]);
  });
  box.replaceChildren(el("div", { class: "groups" }, cards));
}

function renderRaft(s) {
  $("raft-body").replaceChildren(...s.raft_groups.map((g) => el("tr", { "data-raft-group": g.raft_group_id }, [
    el("td", {}, g.raft_group_id === 0 ? "0 · metadata" : String(g.raft_group_id)),
    el("td", {}, [el("span", { class: "tag " + g.state.toLowerCase() }, g.state + (g.ready ? "" : " (replaying)"))]),
    el("td", {}, [el("code", {}, g.leader_id ? g.leader_id + " (" + g.leader + ")" : "none")]),
    numCell("term", g.term),
    numCell("last_index", g.last_index),
    numCell("commit_index", g.commit_index),
    numCell("applied_index", g.applied_index),
    numCell("partitions", g.partitions),
  ])));
}

// renderCluster shows /v1/cluster: the nodes with their state, and each Raft
// group's replicas (the leader highlighted, unreachable ones marked), term,
// commit index and each replica's lag behind it.
function renderCluster(c) {
  const state = {};
  for (const n of c.nodes) state[n.id] = n.state;
  const nodeRows = c.nodes.map((n) => el("tr", { "data-node": n.id, "data-self": String(n.id === c.node_id) }, [
    el("td", {}, [el("b", {}, "node " + n.id), n.id === c.node_id ? el("span", { class: "hint" }, "this node") : null]),
    el("td", { "data-field": "state", "data-value": n.state, title: n.error || "" }, [
      n.state === "alive" && n.ready === false
        ? el("span", { class: "tag notready" }, "alive (not ready)")
        : el("span", { class: "tag " + n.state }, n.state),
      n.error ? el("span", { class: "hint" }, n.error) : null,
    ]),
    el("td", {}, [el("code", {}, n.kafka_addr || "–")]),
    el("td", {}, n.http_addr && n.state !== "removed" && n.id !== c.node_id
      ? [el("a", { href: "http://" + n.http_addr + "/" }, n.http_addr)]
      : [el("code", {}, n.http_addr || "–")]),
    el("td", {}, [el("code", {}, n.cluster_addr || "–")]),
    el("td", {}, n.rack || "–"),
  ]));
  $("cluster-nodes-body").replaceChildren(...nodeRows);

  const raftRows = c.raft_groups.map((g) => {
    const replicas = g.replicas.map((id) => el("span", {
      class: "tag replica " + (id === g.leader ? "leader" : state[id] === "alive" ? "follower" : "down"),
      title: "node " + id + ": " + (state[id] || "unknown") + (id === g.leader ? ", leader" : ""),
    }, String(id)));
    const lagIDs = Object.keys(g.replica_lag).map(Number).sort((a, b) => a - b);
    const lags = lagIDs.map((id) => {
      const v = g.replica_lag[String(id)];
      return el("span", { class: "lag" + (v === null ? " unknown" : v > 0 ? " behind" : ""), "data-node": id, "data-value": v === null ? "" : v },
        id + ": " + (v === null ? "?" : num(v)));
    });
    return el("tr", { "data-raft-group": g.raft_group_id }, [
      el("td", {}, g.raft_group_id === 0 ? "0 · metadata" : String(g.raft_group_id)),
      el("td", { "data-field": "replicas", "data-value": g.replicas.join(",") }, replicas),
      el("td", { "data-field": "leader", "data-value": g.leader }, g.leader >= 0 ? "node " + g.leader : "none"),
      numCell("term", g.term),
      numCell("commit_index", g.commit_index),
      el("td", { "data-field": "lag" }, lags),
    ]);
  });
  $("cluster-raft-body").replaceChildren(...raftRows);
}

// refreshCluster loads /v1/cluster; a failure shows in the section only (the
// node's own status may still be fine). One request at a time: the answer
// waits up to 500 ms for unreachable nodes.
let clusterBusy = false;
async function refreshCluster() {
  if (clusterBusy) return;
  clusterBusy = true;
  try {
    const resp = await fetch("/v1/cluster", { cache: "no-store" });
    const c = await resp.json();
    if (!resp.ok) throw new Error(c.error || resp.statusText);
    renderCluster(c);
    $("cluster-error").hidden = true;
    document.body.dataset.clusterLoaded = String(Number(document.body.dataset.clusterLoaded || 0) + 1);
  } catch (err) {
    $("cluster-error").hidden = false;
    $("cluster-error").textContent = "Cannot load /v1/cluster: " + err.message;
  } finally {
    clusterBusy = false;
  }
}

async function refresh() {
  refreshCluster();
  try {
    const resp = await fetch("/v1/status", { cache: "no-store" });
    const s = await resp.json();
    if (!resp.ok) throw new Error(s.error || resp.statusText);
    renderNode(s);
    renderSummary(s);
    renderTopics(s);
    renderGroups(s);
    renderRaft(s);
    $("error").hidden = true;
    lastOK = Date.now();
    $("updated").textContent = "updated " + new Date(s.time_ms).toLocaleTimeString();
    document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
  } catch (err) {
    $("error").hidden = false;
    $("error").textContent = "Cannot load /v1/status: " + err.message;
    $("node-ready").dataset.state = "down";
    $("node-ready").textContent = "unreachable";
  }
  $("live-dot").className = "dot " + (Date.now() - lastOK < 2 * REFRESH_MS + 500 ? "ok" : "stale");
}

refresh();
setInterval(refresh, REFRESH_MS);
