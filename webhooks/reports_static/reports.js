// The reports page: fetches a report with this tab's token and draws it as an SVG bar chart
// and a table. Every value goes in with textContent or setAttribute, never as HTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
// Which column each report charts, and which column labels the bars.
const CHARTS = {
  funnel: { label: "stage", value: "reached" },
  sources: { label: "value", value: "leads", group: "dimension" },
  "first-response": { label: "name", value: "median_seconds", group: "dimension" },
  "missed-calls": { label: "channel", value: "missed" },
  reminders: { label: "name", value: "done_on_time", second: "done_late" },
};

function token() {
  const value = sessionStorage.getItem("hub.token");
  if (!value) location.replace("/login");
  return value;
}

function query(form, format) {
  const params = new URLSearchParams();
  for (const name of ["from", "to", "pipeline", "by"]) {
    const field = form.elements[name];
    if (field && field.value && !field.closest(".hidden")) params.set(name, field.value);
  }
  if (format) params.set("format", format);
  return `/api/reports/${encodeURIComponent(form.elements.report.value)}?${params}`;
}

async function call(url) {
  const response = await fetch(url, { headers: { Authorization: `Bearer ${token()}` } });
  if (response.status === 401) {
    sessionStorage.removeItem("hub.token");
    location.replace("/login");
  }
  return response;
}

function svg(name, attributes) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  return node;
}

function drawChart(report) {
  const chart = document.getElementById("chart");
  chart.replaceChildren();
  const spec = CHARTS[report.report];
  if (!spec) return;
  const rows = report.rows.filter((row) => typeof row[spec.value] === "number");
  if (!rows.length) return;
  const max = Math.max(1, ...rows.map((row) => row[spec.value] + (row[spec.second] || 0)));
  const barHeight = 22;
  const labelWidth = 220;
  const width = 760;
  const root = svg("svg", {
    width,
    height: rows.length * (barHeight + 6) + 10,
    role: "img",
    "aria-label": `${report.report} chart`,
  });
  rows.forEach((row, index) => {
    const y = index * (barHeight + 6) + 5;
    const label = svg("text", { x: 0, y: y + barHeight * 0.7 });
    const group = spec.group ? `${row[spec.group]}: ` : "";
    label.textContent = `${group}${row[spec.label] ?? "(none)"}`.slice(0, 34);
    root.append(label);
    const scale = (width - labelWidth - 70) / max;
    const first = row[spec.value] * scale;
    const bar = svg("rect", { x: labelWidth, y, width: first, height: barHeight, class: "bar" });
    if (row[spec.label] === "won") bar.setAttribute("class", "bar won");
    root.append(bar);
    let end = labelWidth + first;
    if (spec.second && row[spec.second]) {
      const second = row[spec.second] * scale;
      root.append(svg("rect", { x: end, y, width: second, height: barHeight, class: "bar won" }));
      end += second;
    }
    const value = svg("text", { x: end + 6, y: y + barHeight * 0.7 });
    value.textContent = String(row[spec.value]);
    root.append(value);
  });
  chart.append(root);
}

function drawTable(report) {
  const table = document.getElementById("table");
  const head = document.createElement("tr");
  for (const column of report.columns) {
    const cell = document.createElement("th");
    cell.textContent = column;
    head.append(cell);
  }
  table.tHead.replaceChildren(head);
  const body = report.rows.map((row) => {
    const line = document.createElement("tr");
    for (const column of report.columns) {
      const cell = document.createElement("td");
      const value = row[column];
      cell.textContent = value === null || value === undefined ? "" : String(value);
      if (typeof value !== "number") cell.className = "text";
      line.append(cell);
    }
    return line;
  });
  table.tBodies[0].replaceChildren(...body);
}

function showFields(form) {
  const report = form.elements.report.value;
  document.getElementById("pipeline-field").classList.toggle("hidden", report !== "funnel");
  document.getElementById("by-field").classList.toggle("hidden", report !== "sources");
}

async function show(form) {
  const message = document.getElementById("message");
  message.textContent = "";
  const response = await call(query(form));
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    message.textContent = body.error || `The report failed (${response.status})`;
    return;
  }
  drawChart(body);
  drawTable(body);
}

async function download(form) {
  const message = document.getElementById("message");
  const response = await call(query(form, "csv"));
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    message.textContent = body.error || `The download failed (${response.status})`;
    return;
  }
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = `${form.elements.report.value}.csv`;
  link.click();
  URL.revokeObjectURL(url);
}

async function loadPipelines(form) {
  const response = await call("/api/pipelines");
  if (!response.ok) return;
  const body = await response.json();
  const select = form.elements.pipeline;
  for (const pipeline of body.items) {
    const option = document.createElement("option");
    option.value = pipeline.name;
    option.textContent = pipeline.name;
    option.selected = pipeline.name === body.default;
    select.append(option);
  }
}

document.addEventListener("DOMContentLoaded", async () => {
  token();
  const form = document.getElementById("controls");
  const today = new Date();
  form.elements.to.value = today.toISOString().slice(0, 10);
  form.elements.from.value = new Date(today - 29 * 864e5).toISOString().slice(0, 10);
  form.elements.report.addEventListener("change", () => {
    showFields(form);
    show(form);
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    show(form);
  });
  document.getElementById("csv").addEventListener("click", () => download(form));
  showFields(form);
  await loadPipelines(form);
  show(form);
});
