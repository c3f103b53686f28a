// datakit review: the keyboard loop. Every action is a JSON POST to /api/annotate; the
// server logs it and answers with the new state. No record text is ever inserted as HTML.
(function () {
  "use strict";
  const body = document.body;
  const rid = body.dataset.record;
  if (!rid) return;
  const mode = body.dataset.mode;
  const $ = (id) => document.getElementById(id);
  const flash = (text, bad) => {
    const el = $("flash");
    el.textContent = text;
    el.className = "flash" + (bad ? " bad" : " ok");
  };
  const tokenTag = document.querySelector('meta[name="csrf-token"]');
  const csrf = tokenTag ? tokenTag.content : "";
  let pendingDecision = null;  // "reject" | "skip" while the reason box is open
  let rateArmed = false;       // compare mode: "x" then 1-5 rates

  async function send(payload) {
    const res = await fetch("/api/annotate", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(Object.assign({ record: rid }, payload)),
    });
    let data = {};
    try { data = await res.json(); } catch (e) { data = { error: "unexpected answer from the server" }; }
    if (!res.ok || data.error) {
      flash(data.error || ("error " + res.status), true);
      return null;
    }
    const p = data.progress;
    if (p && $("progress")) $("progress").textContent = "done " + p.done + " / " + p.total + " · mine " + p.mine;
    return data;
  }

  function advance() { window.location.href = body.dataset.after; }

  async function decide(action, extra) {
    const data = await send(Object.assign({ action: action }, extra || {}));
    if (data) { flash(action + " saved"); advance(); }
  }

  function openBox(which, label) {
    if (which === "reason") {
      $("reason-box").hidden = false;
      $("reason-label").textContent = label;
      $("reason").value = "";
      $("reason").focus();
    } else if (which === "comment") {
      $("comment-box").hidden = false;
      $("comment").focus();
    } else if (which === "editor" && $("editor")) {
      $("editor").hidden = false;
      $("edit-text").focus();
    }
  }
  function closeBoxes() {
    for (const id of ["reason-box", "comment-box", "editor"]) if ($(id)) $(id).hidden = true;
    pendingDecision = null;
    document.activeElement && document.activeElement.blur();
  }

  const criteria = (body.dataset.criteria || "").split(",").filter(Boolean);
  let focusIdx = 0;
  function focusCriterion(i) {
    const rows = document.querySelectorAll(".criterion");
    rows.forEach((r, j) => r.classList.toggle("focus", j === i));
    focusIdx = i;
  }
  async function rate(criterion, value) {
    const data = await send({ action: "rate", criterion: criterion, value: value });
    if (!data) return;
    document.querySelectorAll('.rate[data-criterion="' + criterion + '"]').forEach((b) =>
      b.classList.toggle("chosen", Number(b.dataset.value) === value));
    flash(criterion + ": " + value);
    if (focusIdx < criteria.length - 1) focusCriterion(focusIdx + 1);
  }
  async function compare(choice) {
    const data = await send({ action: "compare", choice: choice });
    if (data) { $("my-verdict").textContent = choice; flash("verdict: " + choice); }
  }
  async function rank() {
    const order = $("order").value.trim().toUpperCase();
    const data = await send({ action: "rank", order: order });
    if (data) { $("my-ranking").textContent = order; flash("ranking saved"); $("order").blur(); }
  }

  document.querySelectorAll(".rate").forEach((b) =>
    b.addEventListener("click", () => rate(b.dataset.criterion, Number(b.dataset.value))));
  document.querySelectorAll("[data-key]").forEach((b) =>
    b.addEventListener("click", () => handleKey({ key: b.dataset.key, preventDefault() {} })));
  if ($("save-rank")) $("save-rank").addEventListener("click", rank);

  function handleKey(ev) {
    const k = ev.key;
    const typing = ["INPUT", "TEXTAREA", "SELECT"].includes((document.activeElement || {}).tagName);
    if (k === "Escape") { closeBoxes(); return; }
    if (typing) {
      const el = document.activeElement;
      if (el.id === "reason" && k === "Enter") {
        ev.preventDefault();
        const action = pendingDecision;
        closeBoxes();
        if (action) decide(action, { reason: el.value });
      } else if (el.id === "edit-text" && k === "Enter" && (ev.ctrlKey || ev.metaKey)) {
        ev.preventDefault();
        decide("edit", { text: el.value });
      } else if (el.id === "comment" && k === "Enter" && (ev.ctrlKey || ev.metaKey)) {
        ev.preventDefault();
        const text = el.value;
        closeBoxes();
        send({ action: "comment", text: text }).then((d) => d && flash("comment saved"));
      } else if (el.id === "order" && k === "Enter") {
        ev.preventDefault();
        rank();
      }
      return;
    }
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (k === "a") decide("accept");
    else if (k === "r") { pendingDecision = "reject"; openBox("reason", "why reject?"); ev.preventDefault(); }
    else if (k === "s") { pendingDecision = "skip"; openBox("reason", "why skip?"); ev.preventDefault(); }
    else if (k === "e") { openBox("editor"); ev.preventDefault(); }
    else if (k === "m") { openBox("comment"); ev.preventDefault(); }
    else if (k === "o" && $("order")) { $("order").focus(); ev.preventDefault(); }
    else if (k === "g" && body.dataset.suggestion) decide(body.dataset.suggestion, { reason: "took the judge's suggestion" });
    else if (k === "c") focusCriterion((focusIdx + 1) % criteria.length);
    else if (k === "x") rateArmed = true;
    else if (k === "?") $("cheatsheet").hidden = !$("cheatsheet").hidden;
    else if ((k === "j" || k === "ArrowRight") && body.dataset.next) window.location.href = body.dataset.next;
    else if ((k === "k" || k === "ArrowLeft") && body.dataset.prev) window.location.href = body.dataset.prev;
    else if (mode === "compare" && !rateArmed && (k === "1" || k === "2")) compare(k === "1" ? "A" : "B");
    else if (mode === "compare" && !rateArmed && (k === "0" || k === "t")) compare("tie");
    else if (/^[1-5]$/.test(k) && criteria.length) { rateArmed = false; rate(criteria[focusIdx], Number(k)); }
  }
  document.addEventListener("keydown", handleKey);
})();
