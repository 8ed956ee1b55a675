/*
 * Hub lead form: renders the form configured on the hub into every
 * <div data-hub-form="FORM_ID"></div> of the page and submits it with fetch.
 *
 * Served by GET /forms/{form_id}/embed.js, which replaces the config token below.
 * Plain ES2017, no dependencies. Events dispatched on the div:
 *   hub:submitted  detail = the JSON answer of the hub ({lead_id, contact_id, ...})
 */
(function () {
  "use strict";

  var config = __HUB_FORM_CONFIG__;

  var messages = {
    success: config.success || "Thank you! We will call you back soon.",
    sending: "Sending\u2026",
    fixField: "Please correct the highlighted field.",
    tooManyIn: "Too many attempts, please try again in {n} seconds.",
    tooMany: "Too many attempts, please try again later.",
    error: "Sorry, something went wrong. Please try again.",
    network: "Could not send the form. Please check your connection and try again.",
    required: "required",
    honeypot: "Leave this field empty",
    labels: {
      name: "Name",
      phone: "Phone",
      email: "E-mail",
      message: "Message",
      company: "Company"
    }
  };
  if (config.messages && typeof config.messages === "object") {
    messages = Object.assign({}, messages, config.messages, {
      labels: Object.assign({}, messages.labels, config.messages.labels || {})
    });
  }

  var UTM_KEYS = ["utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content"];
  var MAX_VALUE = 2000; // the hub refuses longer page/utm values
  var TIMEOUT_MS = 30000;
  var STYLE_ID = "hub-form-style";
  var RENDERED = "data-hub-form-rendered";

  var CSS = [
    ".hub-form{box-sizing:border-box;max-width:28rem;width:100%;margin:0;padding:1rem;",
    "font:inherit;font-size:16px;line-height:1.4;color:#1f2328;background:#fff;",
    "border:1px solid #d0d7de;border-radius:8px}",
    ".hub-form *,.hub-form *::before,.hub-form *::after{box-sizing:border-box}",
    ".hub-form__title{margin:0 0 .75rem;font-size:1.15rem;font-weight:600;line-height:1.3}",
    ".hub-form__field{margin:0 0 .75rem}",
    ".hub-form__label{display:block;margin:0 0 .25rem;font-weight:500}",
    ".hub-form__mark{color:#b3261e}",
    ".hub-form__input{display:block;width:100%;margin:0;padding:.6rem .7rem;",
    "font:inherit;font-size:16px;color:inherit;background:#fff;",
    "border:1px solid #8c959f;border-radius:6px}",
    ".hub-form__input:focus{outline:2px solid #0969da;outline-offset:1px;border-color:#0969da}",
    ".hub-form__input[aria-invalid=true]{border-color:#b3261e}",
    "textarea.hub-form__input{min-height:6rem;resize:vertical}",
    ".hub-form__error{margin:.25rem 0 0;color:#b3261e;font-size:.9rem}",
    ".hub-form__error:empty{display:none}",
    ".hub-form__button{display:block;width:100%;min-height:44px;margin:.25rem 0 0;",
    "padding:.6rem 1rem;font:inherit;font-size:16px;font-weight:600;color:#fff;",
    "background:#0969da;border:0;border-radius:6px;cursor:pointer}",
    ".hub-form__button:hover{background:#0550ae}",
    ".hub-form__button:focus-visible{outline:2px solid #0550ae;outline-offset:2px}",
    ".hub-form__button[disabled]{opacity:.6;cursor:progress}",
    ".hub-form__status{margin:.5rem 0 0;font-size:.95rem}",
    ".hub-form__status:empty{display:none}",
    ".hub-form__status--error{color:#b3261e}",
    ".hub-form__status--success{margin:0;color:#1a7f37;font-weight:600;font-size:1.05rem}",
    ".hub-form__hp{position:absolute!important;left:-10000px!important;top:auto!important;",
    "width:1px!important;height:1px!important;overflow:hidden!important}"
  ].join("");

  function injectStyle() {
    if (document.getElementById(STYLE_ID)) {
      return;
    }
    var style = document.createElement("style");
    style.id = STYLE_ID;
    style.textContent = CSS;
    (document.head || document.documentElement).appendChild(style);
  }

  function nextId() {
    window.__hubFormSeq = (window.__hubFormSeq || 0) + 1;
    return "hub-form-" + window.__hubFormSeq;
  }

  function el(tag, className, attrs) {
    var node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    if (attrs) {
      Object.keys(attrs).forEach(function (name) {
        node.setAttribute(name, attrs[name]);
      });
    }
    return node;
  }

  function labelFor(name) {
    if (Object.prototype.hasOwnProperty.call(messages.labels, name)) {
      return messages.labels[name];
    }
    var words = String(name).replace(/[_.\-]+/g, " ").trim();
    return words.charAt(0).toUpperCase() + words.slice(1);
  }

  function inputFor(name, id) {
    var input;
    if (name === "message") {
      input = el("textarea", "hub-form__input", { rows: "4" });
    } else {
      input = el("input", "hub-form__input", { type: "text" });
      if (name === "name") {
        input.setAttribute("autocomplete", "name");
      } else if (name === "phone") {
        input.type = "tel";
        input.setAttribute("autocomplete", "tel");
        input.setAttribute("inputmode", "tel");
      } else if (name === "email") {
        input.type = "email";
        input.setAttribute("autocomplete", "email");
      } else if (name === "company") {
        input.setAttribute("autocomplete", "organization");
      }
    }
    input.id = id;
    input.name = name;
    return input;
  }

  function newKey() {
    var c = window.crypto;
    if (c && typeof c.randomUUID === "function") {
      try {
        return c.randomUUID();
      } catch (e) {
        /* not a secure context in some browsers: fall through */
      }
    }
    var bytes = new Uint8Array(16);
    if (c && typeof c.getRandomValues === "function") {
      c.getRandomValues(bytes);
    } else {
      for (var i = 0; i < bytes.length; i++) {
        bytes[i] = Math.floor(Math.random() * 256);
      }
    }
    return Array.prototype.map
      .call(bytes, function (b) {
        return (b < 16 ? "0" : "") + b.toString(16);
      })
      .join("");
  }

  function clip(value) {
    return String(value).slice(0, MAX_VALUE);
  }

  function pageData() {
    var data = {};
    try {
      var params = new URLSearchParams(window.location.search);
      UTM_KEYS.forEach(function (key) {
        var value = params.get(key);
        if (value) {
          data[key] = clip(value);
        }
      });
    } catch (e) {
      /* no URLSearchParams: no UTM */
    }
    data.page_url = clip(window.location.href);
    if (document.referrer) {
      data.referrer = clip(document.referrer);
    }
    return data;
  }

  function retryAfterSeconds(response, answer) {
    var header = response.headers.get("Retry-After"); // readable only when exposed by CORS
    if (header) {
      var seconds = parseInt(header, 10);
      if (String(seconds) === header.trim()) {
        return Math.max(1, seconds);
      }
      var date = Date.parse(header);
      if (!isNaN(date)) {
        return Math.max(1, Math.ceil((date - Date.now()) / 1000));
      }
    }
    if (answer && typeof answer.retry_after === "number" && answer.retry_after > 0) {
      return Math.ceil(answer.retry_after);
    }
    return null;
  }

  function render(host) {
    host.setAttribute(RENDERED, "1");
    injectStyle();

    var base = nextId();
    var wrapper = el("div", "hub-form");
    var form = el("form", "hub-form__form", {
      action: config.action,
      method: "post",
      "accept-charset": "utf-8"
    });
    var inputs = {};
    var errors = {};

    if (config.title) {
      var title = el("h2", "hub-form__title", { id: base + "-title" });
      title.textContent = config.title;
      form.appendChild(title);
      form.setAttribute("aria-labelledby", base + "-title");
    }

    var required = config.required || [];
    (config.fields || []).forEach(function (name, index) {
      var id = base + "-f" + index;
      var field = el("div", "hub-form__field");
      var label = el("label", "hub-form__label", { for: id });
      label.textContent = labelFor(name);
      var input = inputFor(name, id);
      var errorEl = el("div", "hub-form__error", { id: id + "-error" });
      if (required.indexOf(name) !== -1) {
        input.required = true;
        var mark = el("span", "hub-form__mark", { "aria-hidden": "true" });
        mark.textContent = " *";
        label.appendChild(mark);
      }
      field.appendChild(label);
      field.appendChild(input);
      field.appendChild(errorEl);
      form.appendChild(field);
      inputs[name] = input;
      errors[name] = errorEl;
    });

    var hp = el("div", "hub-form__hp", { "aria-hidden": "true" });
    var hpLabel = el("label", null, { for: base + "-hp" });
    hpLabel.textContent = messages.honeypot;
    var honeypot = el("input", null, {
      type: "text",
      id: base + "-hp",
      name: "_gotcha",
      tabindex: "-1",
      autocomplete: "off",
      "aria-hidden": "true"
    });
    hp.appendChild(hpLabel);
    hp.appendChild(honeypot);
    form.appendChild(hp);

    var button = el("button", "hub-form__button", { type: "submit" });
    button.textContent = config.submit_label || "Send";
    form.appendChild(button);

    var status = el("div", "hub-form__status", {
      role: "status",
      "aria-live": "polite",
      id: base + "-status"
    });

    wrapper.appendChild(form);
    wrapper.appendChild(status);
    host.appendChild(wrapper);

    // One key per submission attempt: reused on a retry of the same filled form (so a
    // retried or doubled post is stored once), renewed after an edit or a success.
    var key = null;
    var sending = false;

    function setStatus(text, kind) {
      status.className = "hub-form__status" + (kind ? " hub-form__status--" + kind : "");
      status.textContent = text || "";
    }

    function clearFieldError(name) {
      var input = inputs[name];
      if (!input) {
        return;
      }
      input.removeAttribute("aria-invalid");
      input.removeAttribute("aria-describedby");
      errors[name].textContent = "";
    }

    function showFieldError(name, text) {
      var input = inputs[name];
      input.setAttribute("aria-invalid", "true");
      input.setAttribute("aria-describedby", errors[name].id);
      var prefix = name + ": ";
      errors[name].textContent = text.indexOf(prefix) === 0 ? text.slice(prefix.length) : text;
      input.focus();
    }

    function clearErrors() {
      Object.keys(inputs).forEach(clearFieldError);
    }

    function setSending(on) {
      sending = on;
      button.disabled = on;
      form.setAttribute("aria-busy", on ? "true" : "false");
    }

    form.addEventListener("input", function (event) {
      key = null; // the user changed the data: the next submission is a new one
      if (event.target && event.target.name) {
        clearFieldError(event.target.name);
      }
    });

    function succeed(answer) {
      key = null;
      wrapper.removeChild(form);
      setStatus(messages.success, "success");
      var detail = answer || {};
      var evt;
      if (typeof window.CustomEvent === "function") {
        evt = new CustomEvent("hub:submitted", { bubbles: true, detail: detail });
      } else {
        evt = document.createEvent("CustomEvent");
        evt.initCustomEvent("hub:submitted", true, false, detail);
      }
      host.dispatchEvent(evt);
    }

    function fail(response, answer) {
      var reason = answer && typeof answer.error === "string" ? answer.error : "";
      if (response.status === 400 && answer && answer.field && inputs[answer.field]) {
        setStatus(messages.fixField, "error");
        showFieldError(answer.field, reason || messages.error);
      } else if (response.status === 400 && reason) {
        setStatus(reason, "error");
      } else if (response.status === 429) {
        var seconds = retryAfterSeconds(response, answer);
        setStatus(
          seconds ? messages.tooManyIn.replace("{n}", String(seconds)) : messages.tooMany,
          "error"
        );
      } else {
        setStatus(messages.error, "error");
      }
    }

    form.addEventListener("submit", function (event) {
      if (typeof window.fetch !== "function") {
        // Very old browser: let the plain HTML post go (the hub answers with a page).
        var extra = pageData();
        Object.keys(extra).forEach(function (name) {
          var hidden = el("input", null, { type: "hidden", name: name });
          hidden.value = extra[name];
          form.appendChild(hidden);
        });
        return;
      }
      event.preventDefault();
      if (sending) {
        return;
      }
      clearErrors();

      var data = {};
      Object.keys(inputs).forEach(function (name) {
        data[name] = inputs[name].value;
      });
      Object.assign(data, pageData());
      data._gotcha = honeypot.value;

      if (!key) {
        key = newKey();
      }
      var controller = typeof AbortController === "function" ? new AbortController() : null;
      var timer = controller
        ? setTimeout(function () {
            controller.abort();
          }, TIMEOUT_MS)
        : null;

      setSending(true);
      setStatus(messages.sending, null);

      fetch(config.action, {
        method: "POST",
        headers: {
          "Content-Type": "application/json",
          Accept: "application/json",
          "Idempotency-Key": key
        },
        body: JSON.stringify(data),
        mode: "cors",
        credentials: "omit",
        signal: controller ? controller.signal : undefined
      })
        .then(function (response) {
          return response
            .json()
            .catch(function () {
              return null;
            })
            .then(function (answer) {
              if (timer) {
                clearTimeout(timer);
              }
              setSending(false);
              if (response.status === 201) {
                succeed(answer);
              } else {
                fail(response, answer);
              }
            });
        })
        .catch(function () {
          // Network error, CORS refusal or timeout: keep the input and the key, so a retry
          // of the same data is recognised by the hub if the first post did arrive.
          if (timer) {
            clearTimeout(timer);
          }
          setSending(false);
          setStatus(messages.network, "error");
        });
    });
  }

  function scan() {
    var hosts = document.querySelectorAll("[data-hub-form]");
    for (var i = 0; i < hosts.length; i++) {
      var host = hosts[i];
      if (host.getAttribute("data-hub-form") === config.id && !host.hasAttribute(RENDERED)) {
        render(host);
      }
    }
  }

  var scheduled = false;
  function scheduleScan() {
    if (scheduled) {
      return;
    }
    scheduled = true;
    setTimeout(function () {
      scheduled = false;
      scan();
    }, 0);
  }

  function start() {
    scan();
    if (typeof MutationObserver === "function" && document.documentElement) {
      new MutationObserver(scheduleScan).observe(document.documentElement, {
        childList: true,
        subtree: true
      });
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
