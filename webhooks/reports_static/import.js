// The admin import page: posts the chosen CSV to /api/import/contacts (a dry run first, if
// asked) and shows the summary and the rejected rows. Text only, via textContent.
"use strict";

function token() {
  const value = sessionStorage.getItem("hub.token");
  if (!value) location.replace("/login");
  return value;
}

function row(cells) {
  const line = document.createElement("tr");
  for (const value of cells) {
    const cell = document.createElement("td");
    cell.textContent = String(value);
    cell.className = "text";
    line.append(cell);
  }
  return line;
}

async function upload(form, dryRun) {
  const message = document.getElementById("message");
  message.textContent = "";
  const file = form.elements.file.files[0];
  if (!file) {
    message.textContent = "Choose a CSV file first.";
    return;
  }
  const params = new URLSearchParams();
  for (const line of form.elements.map.value.split("\n")) {
    if (line.trim()) params.append("map", line.trim());
  }
  if (dryRun) params.set("dry_run", "1");
  const response = await fetch(`/api/import/contacts?${params}`, {
    method: "POST",
    headers: { Authorization: `Bearer ${token()}`, "Content-Type": "text/csv" },
    body: file,
  });
  if (response.status === 401) location.replace("/login");
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    message.textContent = body.error || `The import failed (${response.status})`;
    return;
  }
  message.textContent = body.dry_run ? "Dry run: nothing was written." : "Imported.";
  document.getElementById("summary").tBodies[0].replaceChildren(
    row(["rows", body.rows]),
    row(["new contacts", body.created]),
    row(["matched existing", body.matched]),
    row(["updated", body.updated]),
    row(["rejected", body.rejected_count]),
  );
  document.getElementById("rejected-title").classList.toggle("hidden", !body.rejected_count);
  document
    .getElementById("rejected")
    .tBodies[0].replaceChildren(...body.rejected.map((r) => row([r.line, r.reason])));
}

document.addEventListener("DOMContentLoaded", () => {
  token();
  const form = document.getElementById("import");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    upload(form, event.submitter && event.submitter.value === "1");
  });
});
