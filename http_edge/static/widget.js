/* Switchboard chat widget: embed a published agent on any site with a publishable key.
 *
 *   <script src="https://HOST/widget.js" data-key="pk_…" data-agent="support-bot" defer></script>
 *
 * Optional: data-title, data-color, data-text-color, data-background, data-foreground,
 * data-position ("right" or "left"), data-offset (a CSS length), data-open ("true"),
 * data-z-index, data-base (the Switchboard URL; default: where this script came from).
 * Everything lives in a shadow root, so the page's CSS cannot break it, and every text the
 * server sends is set as text, never as HTML. */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script) return;
  var data = script.dataset;
  var key = data.key || "";
  var agent = data.agent || "";
  if (!key || !agent) {
    console.warn("Switchboard widget: set data-key and data-agent on the script tag");
    return;
  }
  var base = (data.base || new URL(script.src, location.href).origin).replace(/\/+$/, "");
  var storeKey = "switchboard:" + base + ":" + agent + ":" + key.slice(0, 12);
  var marker = "data-switchboard-" + agent.replace(/[^a-z0-9-]/gi, "");
  if (document.querySelector("[" + marker + "]")) return;

  var CSS =
    ":host{all:initial;--sb-accent:#2563eb;--sb-on-accent:#fff;--sb-bg:#fff;--sb-fg:#1f2937;" +
    "--sb-muted:#6b7280;--sb-line:#e5e7eb;--sb-offset:20px;" +
    "bottom:var(--sb-offset);right:var(--sb-offset);font:15px/1.45 system-ui,-apple-system," +
    "'Segoe UI',Roboto,sans-serif;color:var(--sb-fg)}" +
    ":host([data-position=left]){right:auto;left:var(--sb-offset)}" +
    "*{box-sizing:border-box;font:inherit}" +
    "button{cursor:pointer;border:0;background:none;color:inherit}" +
    ":focus-visible{outline:3px solid var(--sb-accent);outline-offset:2px}" +
    ".sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}" +
    ".launcher{width:56px;height:56px;border-radius:50%;background:var(--sb-accent);" +
    "color:var(--sb-on-accent);box-shadow:0 4px 16px rgba(0,0,0,.25);display:grid;place-items:center}" +
    ".launcher svg{width:28px;height:28px;fill:currentColor}" +
    ".panel{position:absolute;bottom:72px;right:0;width:370px;height:min(560px,calc(100vh - 110px));" +
    "background:var(--sb-bg);border-radius:14px;box-shadow:0 12px 40px rgba(0,0,0,.25);" +
    "display:flex;flex-direction:column;overflow:hidden;text-align:left;" +
    "font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:var(--sb-fg)}" +
    ":host([data-position=left]) .panel{right:auto;left:0}" +
    ".panel[hidden]{display:none}" +
    "header{display:flex;align-items:center;gap:8px;padding:12px 14px;background:var(--sb-accent);" +
    "color:var(--sb-on-accent)}" +
    "h2{margin:0;flex:1;font-size:16px;font-weight:600}" +
    ".close{font-size:24px;line-height:1;width:32px;height:32px;border-radius:6px}" +
    ".log{flex:1;overflow-y:auto;margin:0;padding:14px;list-style:none;display:flex;" +
    "flex-direction:column;gap:10px}" +
    ".msg{max-width:85%;padding:9px 12px;border-radius:14px;white-space:pre-wrap;" +
    "overflow-wrap:anywhere}" +
    ".bot{align-self:flex-start;background:var(--sb-line);border-bottom-left-radius:4px}" +
    ".user{align-self:flex-end;background:var(--sb-accent);color:var(--sb-on-accent);" +
    "border-bottom-right-radius:4px}" +
    ".note{font-size:12px;color:var(--sb-muted);display:block;margin-top:4px}" +
    ".sources{display:flex;flex-wrap:wrap;gap:4px;margin:6px 0 0;padding:0;list-style:none;" +
    "font-size:12px;color:var(--sb-muted);white-space:normal}" +
    ".sources li{border:1px solid var(--sb-muted);border-radius:10px;padding:0 7px}" +
    ".typing{align-self:flex-start;padding:0 14px 6px;color:var(--sb-muted)}" +
    ".typing span{display:inline-block;width:7px;height:7px;margin-right:3px;border-radius:50%;" +
    "background:currentColor;animation:sb-blink 1.2s infinite}" +
    ".typing span:nth-child(2){animation-delay:.2s}.typing span:nth-child(3){animation-delay:.4s}" +
    "@keyframes sb-blink{0%,80%,100%{opacity:.25}40%{opacity:1}}" +
    ".replies{display:flex;flex-wrap:wrap;gap:6px;padding:0 14px 8px}" +
    ".replies button{border:1px solid var(--sb-accent);color:var(--sb-accent);border-radius:16px;" +
    "padding:4px 10px;font-size:13px;background:var(--sb-bg)}" +
    ".status{margin:0 14px 8px;padding:8px 10px;border-radius:8px;background:#fef2f2;" +
    "color:#991b1b;font-size:14px}" +
    ".status button{text-decoration:underline;color:inherit;padding:0 0 0 6px}" +
    "form{display:flex;gap:8px;padding:10px;border-top:1px solid var(--sb-line)}" +
    "textarea{flex:1;resize:none;border:1px solid var(--sb-line);border-radius:10px;" +
    "padding:8px 10px;max-height:120px;background:var(--sb-bg);color:var(--sb-fg)}" +
    ".send{background:var(--sb-accent);color:var(--sb-on-accent);border-radius:10px;padding:0 14px;" +
    "font-weight:600}" +
    ".send:disabled{opacity:.5;cursor:default}" +
    "@media (max-width:480px){:host{bottom:12px;right:12px}" +
    ":host([data-position=left]){left:12px}" +
    ".panel{position:fixed;inset:0;width:100%;height:100%;border-radius:0}}" +
    "@media (prefers-reduced-motion:reduce){.typing span{animation:none}}";
  var ICON =
    '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 ' +
    '2H8l-4 4V6a2 2 0 0 1 2-2z"/></svg>';

  var host = document.createElement("div");
  host.setAttribute(marker, "");
  // Inline and important, so that no rule of the page can move or hide the widget.
  host.style.cssText = "position:fixed!important;display:block!important;z-index:2147483000";
  host.dataset.position = data.position === "left" ? "left" : "right";
  var styles = {
    "--sb-accent": data.color,
    "--sb-on-accent": data.textColor,
    "--sb-bg": data.background,
    "--sb-fg": data.foreground,
    "--sb-offset": data.offset
  };
  for (var name in styles) if (styles[name]) host.style.setProperty(name, styles[name]);
  if (data.zIndex) host.style.zIndex = data.zIndex;
  var root = host.attachShadow({ mode: "open" });
  root.innerHTML =
    "<style>" + CSS + "</style>" +
    '<button class="launcher" type="button" aria-expanded="false" aria-controls="panel">' +
    ICON + "</button>" +
    '<section class="panel" id="panel" role="dialog" aria-labelledby="title" hidden>' +
    '<header><h2 id="title"></h2>' +
    '<button class="close" type="button" aria-label="Close chat">&times;</button></header>' +
    '<ol class="log" aria-label="Conversation" tabindex="0"></ol>' +
    '<div class="typing" role="status" hidden></div>' +
    '<div class="replies" role="group" aria-label="Suggested questions"></div>' +
    '<p class="status" role="alert" hidden></p>' +
    '<div class="sr" aria-live="polite"></div>' +
    '<form><label class="sr" for="input">Your message</label>' +
    '<textarea id="input" rows="1" maxlength="4000" placeholder="Type your message…"></textarea>' +
    '<button class="send" type="submit">Send</button></form></section>';
  function $(selector) {
    return root.querySelector(selector);
  }
  var launcher = $(".launcher");
  var panel = $(".panel");
  var title = $("#title");
  var log = $(".log");
  var typing = $(".typing");
  var replies = $(".replies");
  var status = $(".status");
  var announcer = $(".sr[aria-live]");
  var form = $("form");
  var input = $("textarea");
  var sendButton = $(".send");

  var model = null;
  var loading = null;
  var busy = false;
  var controller = null;
  var lastQuestion = "";

  function setTitle(text) {
    title.textContent = text;
    launcher.setAttribute("aria-label", "Chat with " + text);
  }
  setTitle(data.title || "Chat");

  function stored() {
    try {
      return localStorage.getItem(storeKey) || "";
    } catch (e) {
      return "";
    }
  }
  function store(id) {
    try {
      if (id) localStorage.setItem(storeKey, id);
      else localStorage.removeItem(storeKey);
    } catch (e) {
      /* Storage may be blocked (private modes, sandboxed frames): the chat still works. */
    }
  }

  function call(method, path, body, signal) {
    var headers = { authorization: "Bearer " + key };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (method === "STREAM") headers.accept = "text/event-stream";
    return fetch(base + path, {
      method: method === "STREAM" ? "POST" : method,
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: signal,
      credentials: "omit"
    }).then(function (response) {
      if (response.ok) return response;
      return response.text().then(function (text) {
        var error = new Error("HTTP " + response.status);
        error.status = response.status;
        error.retryAfter = response.headers.get("retry-after");
        try {
          error.body = JSON.parse(text);
        } catch (e) {
          error.body = null;
        }
        throw error;
      });
    });
  }
  function json(response) {
    return response.json();
  }

  function scrollDown() {
    log.scrollTop = log.scrollHeight;
  }
  function addMessage(role, text) {
    var item = document.createElement("li");
    item.className = "msg " + (role === "user" ? "user" : "bot");
    var who = document.createElement("span");
    who.className = "sr";
    who.textContent = role === "user" ? "You: " : title.textContent + ": ";
    var body = document.createElement("span");
    body.className = "text";
    body.textContent = text || "";
    item.appendChild(who);
    item.appendChild(body);
    log.appendChild(item);
    scrollDown();
    return item;
  }
  function addNote(item, text) {
    var note = document.createElement("span");
    note.className = "note";
    note.textContent = text;
    item.appendChild(note);
  }
  function addSources(item, sources) {
    var seen = {};
    var list = document.createElement("ul");
    list.className = "sources";
    list.setAttribute("aria-label", "Sources");
    (sources || []).forEach(function (source) {
      var label = source.title || "Source";
      if (seen[label]) return;
      seen[label] = true;
      var entry = document.createElement("li");
      entry.textContent = label;
      if (source.text) entry.title = source.text.slice(0, 300);
      list.appendChild(entry);
    });
    if (list.childNodes.length) item.appendChild(list);
  }
  function announce(text) {
    announcer.textContent = text;
  }

  function showReplies(list) {
    replies.textContent = "";
    (list || []).forEach(function (text) {
      var button = document.createElement("button");
      button.type = "button";
      button.textContent = text;
      button.addEventListener("click", function () {
        ask(text);
      });
      replies.appendChild(button);
    });
    scrollDown();
  }
  function showTyping(on) {
    typing.hidden = !on;
    typing.innerHTML = on ? "<span></span><span></span><span></span>" : "";
    if (on) {
      var label = document.createElement("b");
      label.className = "sr";
      label.textContent = title.textContent + " is typing";
      typing.appendChild(label);
    }
  }
  function showStatus(text, retry) {
    status.textContent = text;
    status.hidden = !text;
    if (text && retry) {
      var button = document.createElement("button");
      button.type = "button";
      button.textContent = "Try again";
      button.addEventListener("click", function () {
        showStatus("");
        ask(lastQuestion, true);
      });
      status.appendChild(button);
    }
  }
  function setBusy(on) {
    busy = on;
    sendButton.textContent = on ? "Stop" : "Send";
    sendButton.setAttribute("aria-label", on ? "Stop the reply" : "Send message");
  }

  function reasonOf(body) {
    var details = (body && body.details) || [];
    for (var i = 0; i < details.length; i++) if (details[i].reason) return details[i].reason;
    return (body && body.reason) || "";
  }
  function retrySeconds(error) {
    var header = error.retryAfter;
    if (header) {
      var seconds = /^\d+$/.test(header) ? +header : (Date.parse(header) - Date.now()) / 1000;
      if (seconds >= 0) return Math.ceil(seconds);
    }
    var details = (error.body && error.body.details) || [];
    for (var i = 0; i < details.length; i++) {
      var delay = details[i].retry_delay || details[i].retryDelay;
      if (delay) return Math.ceil(parseFloat(delay));
    }
    return 0;
  }
  function explain(error) {
    var status = error.status || 0;
    var reason = reasonOf(error.body);
    if (status === 402 || reason === "INSUFFICIENT_BALANCE") {
      return ["Sorry, this assistant can't take new questions right now. Please try again later."];
    }
    if (status === 429 || reason === "RATE_LIMIT_EXCEEDED") {
      var seconds = retrySeconds(error);
      return [
        "You're sending messages too quickly. " +
          (seconds ? "Please try again in " + seconds + (seconds === 1 ? " second." : " seconds.")
            : "Please wait a moment and try again."),
        true
      ];
    }
    if (status === 401 || status === 403 || status === 404) {
      return ["This chat isn't available on this site right now."];
    }
    if (status >= 500 || error.body) {
      return ["Something went wrong on our side. Please try again in a moment.", true];
    }
    if (navigator.onLine === false) {
      return ["You seem to be offline. Check your connection and try again.", true];
    }
    return ["Can't reach the assistant right now. Check your connection and try again.", true];
  }

  function loadModel() {
    if (!loading) {
      loading = call("GET", "/v1/models/" + encodeURIComponent(agent))
        .then(json)
        .then(function (found) {
          model = found;
          if (!data.title && found.display_name) setTitle(found.display_name);
          if (found.greeting) addMessage("bot", found.greeting).classList.add("greeting");
          return loadHistory();
        })
        .catch(function (error) {
          loading = null;
          var explained = explain(error);
          showStatus(explained[0]);
        });
    }
    return loading;
  }

  function loadHistory() {
    var session = stored();
    if (!session) {
      showReplies(model.quick_replies);
      return null;
    }
    var messages = [];
    function page(token, left) {
      var query = "?page_size=200" + (token ? "&page_token=" + encodeURIComponent(token) : "");
      var path = "/v1/sessions/" + encodeURIComponent(session) + "/messages" + query;
      return call("GET", path)
        .then(json)
        .then(function (answer) {
          messages = messages.concat(answer.messages || []);
          if (answer.next_page_token && left > 1) return page(answer.next_page_token, left - 1);
        });
    }
    return page("", 10)
      .then(function () {
        messages.forEach(function (message) {
          if (message.role === "ROLE_USER") addMessage("user", message.content);
          if (message.role !== "ROLE_ASSISTANT" || !message.content) return;
          var item = addMessage("bot", message.content);
          if (message.status === "MESSAGE_STATUS_INCOMPLETE") addNote(item, "(reply cut short)");
          addSources(item, message.sources);
        });
        showReplies(messages.length ? [] : model.quick_replies);
      })
      .catch(function (error) {
        // A session that no longer exists (or was never this key's) starts over.
        if (error.status === 404) store("");
        showReplies(model.quick_replies);
      });
  }

  function ensureSession() {
    var session = stored();
    if (session) return Promise.resolve(session);
    return call("POST", "/v1/sessions", { agent: "agents/" + agent })
      .then(json)
      .then(function (created) {
        store(created.id);
        return created.id;
      });
  }

  function readEvents(response, onEvent) {
    var reader = response.body.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    function pump() {
      return reader.read().then(function (chunk) {
        if (chunk.done) return;
        buffer += decoder.decode(chunk.value, { stream: true }).replace(/\r\n?/g, "\n");
        var end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          var block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          var lines = block.split("\n").filter(function (line) {
            return line.indexOf("data:") === 0;
          });
          if (!lines.length) continue;
          var text = lines.map(function (line) {
            return line.slice(5).replace(/^ /, "");
          }).join("\n");
          try {
            onEvent(JSON.parse(text));
          } catch (error) {
            reader.cancel();
            throw error;
          }
        }
        return pump();
      });
    }
    return pump();
  }

  function ask(text, again) {
    text = (text || "").trim();
    if (!text || busy) return;
    lastQuestion = text;
    if (!again) addMessage("user", text);
    showReplies([]);
    showStatus("");
    showTyping(true);
    setBusy(true);
    controller = window.AbortController ? new AbortController() : null;
    var reply = null;
    var answer = "";
    var finished = false;
    var next = [];
    function stream(retried) {
      return ensureSession()
        .then(function (session) {
          var path = "/v1/sessions/" + encodeURIComponent(session) + "/messages:stream";
          return call("STREAM", path, { content: text }, controller && controller.signal);
        })
        .catch(function (error) {
          if (error.status === 404 && !retried) {
            store("");
            return stream(true);
          }
          throw error;
        });
    }
    stream(false)
      .then(function (response) {
        return readEvents(response, function (event) {
          if (event.error) {
            var failure = new Error(event.error.message || "stream error");
            failure.body = event.error;
            failure.status = event.error.code === 8 ? 429 : 500;
            throw failure;
          }
          var result = event.result || {};
          if (result.content) {
            if (!reply) {
              showTyping(false);
              reply = addMessage("bot", "");
            }
            answer += result.content.text || "";
            reply.querySelector(".text").textContent = answer;
            scrollDown();
          } else if (result.quick_replies) {
            next = result.quick_replies.replies || [];
          } else if (result.done) {
            finished = true;
            if (!reply) reply = addMessage("bot", "");
            addSources(reply, result.done.sources);
            scrollDown();
          } else if (result.error) {
            var stopped = new Error(result.error.message || "turn failed");
            stopped.body = result.error;
            stopped.status = result.error.reason === "INSUFFICIENT_BALANCE" ? 402 : 500;
            if (result.error.code === "RESOURCE_EXHAUSTED" && stopped.status !== 402) {
              stopped.status = 429;
            }
            if (result.error.code === "CANCELLED") stopped.cancelled = true;
            throw stopped;
          }
        });
      })
      .then(function () {
        if (!finished) throw new Error("the stream ended early");
        announce(title.textContent + ": " + answer);
        showReplies(next);
      })
      .catch(function (error) {
        if (reply && answer) addNote(reply, "(reply cut short)");
        if (error.name === "AbortError" || error.cancelled) {
          showReplies(next);
          return;
        }
        var explained = explain(error);
        showStatus(explained[0], explained[1]);
        announce(explained[0]);
      })
      .then(function () {
        showTyping(false);
        setBusy(false);
        controller = null;
      });
  }

  function open(focus) {
    panel.hidden = false;
    launcher.setAttribute("aria-expanded", "true");
    launcher.setAttribute("aria-label", "Close chat");
    loadModel();
    // Opened at load (data-open), it leaves the page's focus where it was.
    if (focus) input.focus();
  }
  function close() {
    panel.hidden = true;
    launcher.setAttribute("aria-expanded", "false");
    setTitle(title.textContent);
    launcher.focus();
  }

  launcher.addEventListener("click", function () {
    if (panel.hidden) open(true);
    else close();
  });
  $(".close").addEventListener("click", close);
  panel.addEventListener("keydown", function (event) {
    if (event.key === "Escape") close();
  });
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (busy) {
      if (controller) controller.abort();
      return;
    }
    var text = input.value;
    input.value = "";
    ask(text);
  });
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit ? form.requestSubmit() : sendButton.click();
    }
  });

  function mount() {
    document.body.appendChild(host);
    if (data.open === "true") open(false);
  }
  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);
})();
