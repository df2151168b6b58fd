/* celery-watchdog's page script: refresh in place, and the operator's actions.
 *
 * No framework and nothing inline (the Content-Security-Policy allows only this file).
 * - Every few seconds it fetches the same URL and patches the regions marked data-refresh
 *   node by node: text and attributes that changed are updated, the rest is left alone, so
 *   nothing flickers and focus, scroll, open <details> and half-typed input survive.
 *   The server renders (and escapes) every value; nothing here writes HTML from data: the
 *   fetched page is parsed by DOMParser (an inert document) and its nodes are imported, and
 *   every message this script writes itself is set with textContent.
 * - Forms marked data-action (acknowledge, snooze) are sent with fetch and the session's
 *   CSRF token (X-CSRF-Token, from <meta name="csrf-token">); a dead letter's replay form
 *   (data-replay) asks for a dry run first, shows what would happen, and publishes only when
 *   the person confirms.
 */
(function () {
  "use strict";

  var live = document.getElementById("live");
  var seconds = Number((document.querySelector('meta[name="refresh-seconds"]') || {}).content) || 5;
  var timer = null;
  var inFlight = false;

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") || "" : "";
  }

  function announce(text) {
    if (!live) return;
    // Emptied first: screen readers announce a change, and the same words twice are one.
    live.textContent = "";
    window.setTimeout(function () { live.textContent = text; }, 50);
  }

  function setStatus(text) {
    var status = document.getElementById("refresh-status");
    if (status) status.textContent = text;
  }

  // -- patching the page in place --------------------------------------------------------

  function keyOf(node) {
    if (node.nodeType !== 1) return null;
    return node.getAttribute("data-key") || node.id || null;
  }

  function sameKind(a, b) {
    return a.nodeType === b.nodeType && a.nodeName === b.nodeName && keyOf(a) === keyOf(b);
  }

  // Attributes the person controls: the server's copy never overrides them.
  function personal(el, name) {
    return (name === "open" && el.nodeName === "DETAILS") ||
      (name === "value" && (el.nodeName === "INPUT" || el.nodeName === "SELECT"));
  }

  function syncAttributes(from, to) {
    var i, attr;
    for (i = from.attributes.length - 1; i >= 0; i--) {
      attr = from.attributes[i];
      if (!to.hasAttribute(attr.name) && !personal(from, attr.name)) from.removeAttribute(attr.name);
    }
    for (i = 0; i < to.attributes.length; i++) {
      attr = to.attributes[i];
      if (personal(from, attr.name)) continue;
      if (from.getAttribute(attr.name) !== attr.value) from.setAttribute(attr.name, attr.value);
    }
  }

  function morph(from, to) {
    if (from.nodeType !== 1) {
      if (from.nodeValue !== to.nodeValue) from.nodeValue = to.nodeValue;
      return;
    }
    // A form waiting for its answer, or a region this script filled: left as they are.
    if (from.getAttribute("aria-busy") === "true") return;
    syncAttributes(from, to);
    if (from.hasAttribute("data-keep")) return;
    morphChildren(from, to);
  }

  // A message this script added (an error beside a button) is not the server's to remove.
  function own(node) {
    return node.nodeType === 1 && node.hasAttribute("data-client");
  }

  function skipOwn(node) {
    while (node && own(node)) node = node.nextSibling;
    return node;
  }

  function morphChildren(from, to) {
    var keyed = {};
    var child;
    for (child = from.firstChild; child; child = child.nextSibling) {
      var k = keyOf(child);
      if (k && !own(child)) keyed[k] = child;
    }
    var cursor = skipOwn(from.firstChild);
    var wanted = Array.prototype.slice.call(to.childNodes);
    for (var i = 0; i < wanted.length; i++) {
      var next = wanted[i];
      var key = keyOf(next);
      var match = null;
      if (key) {
        match = keyed[key] || null;
        if (match && !sameKind(match, next)) match = null;
        delete keyed[key];
      } else if (cursor && !keyOf(cursor) && sameKind(cursor, next)) {
        match = cursor;
      }
      if (match) {
        if (match === cursor) cursor = skipOwn(cursor.nextSibling);
        else from.insertBefore(match, cursor);
        morph(match, next);
      } else {
        from.insertBefore(document.importNode(next, true), cursor);
      }
    }
    while (cursor) {
      var gone = cursor;
      cursor = skipOwn(cursor.nextSibling);
      from.removeChild(gone);
    }
  }

  function focusAfter(card) {
    // The focused control went away (an acknowledged incident loses its button): keep the
    // person where they were instead of dropping focus to the top of the page.
    if (!card) return;
    var target = card.querySelector("a, button, select, input");
    if (target) target.focus();
  }

  function apply(html) {
    var fresh = new DOMParser().parseFromString(html, "text/html");
    var focused = document.activeElement;
    var card = focused && focused.closest ? focused.closest("[data-key]") : null;
    var cardKey = card ? card.getAttribute("data-key") : null;
    var before = attentionCount();
    var regions = document.querySelectorAll("[data-refresh]");
    for (var i = 0; i < regions.length; i++) {
      var region = regions[i];
      var replacement = region.id ? fresh.getElementById(region.id) : null;
      if (replacement) morph(region, replacement);
    }
    if (fresh.title && document.title !== fresh.title) document.title = fresh.title;
    if (focused && focused !== document.body && !document.body.contains(focused) && cardKey) {
      focusAfter(document.querySelector('[data-key="' + CSS.escape(cardKey) + '"]'));
    }
    var after = attentionCount();
    if (before !== null && after !== null && before !== after) {
      announce(after === 0 ? "All clear: nothing needs attention."
        : "Needs attention: " + after + (after === 1 ? " thing." : " things."));
    }
  }

  function attentionCount() {
    var el = document.querySelector("[data-attention]");
    return el ? Number(el.getAttribute("data-attention")) : null;
  }

  function refresh() {
    if (inFlight) return Promise.resolve();
    inFlight = true;
    return fetch(window.location.href, {
      credentials: "same-origin",
      cache: "no-store",
      headers: { "Accept": "text/html" }
    }).then(function (response) {
      if (response.status === 401) {
        setStatus("Signed out: reload the page to sign in again.");
        return null;
      }
      if (!response.ok) {
        setStatus("Could not update (" + response.status + "); trying again shortly.");
        return response.status === 503 ? response.text() : null;
      }
      return response.text();
    }).then(function (html) {
      if (html) apply(html);
    }).catch(function () {
      setStatus("Could not reach the server; trying again shortly.");
    }).then(function () {
      inFlight = false;
    });
  }

  function schedule() {
    window.clearTimeout(timer);
    timer = window.setTimeout(function () {
      var next = document.visibilityState === "hidden" ? Promise.resolve() : refresh();
      next.then(schedule);
    }, seconds * 1000);
  }

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") refresh().then(schedule);
  });

  // -- actions ----------------------------------------------------------------------------

  function post(url, form) {
    var body = new URLSearchParams();
    if (form) {
      new FormData(form).forEach(function (value, name) { body.append(name, String(value)); });
    }
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrfToken(), "Accept": "application/json" },
      body: body
    }).then(function (response) {
      return response.text().then(function (text) {
        var data = null;
        try { data = JSON.parse(text); } catch (e) { data = null; }
        if (!response.ok || !data || data.ok === false || data.error) {
          var why = (data && (data.error || data.detail)) || text || ("HTTP " + response.status);
          throw new Error(String(why).slice(0, 300));
        }
        return data;
      });
    });
  }

  function busy(form, on) {
    if (on) form.setAttribute("aria-busy", "true");
    else form.removeAttribute("aria-busy");
    var buttons = form.querySelectorAll("button");
    for (var i = 0; i < buttons.length; i++) buttons[i].disabled = on;
  }

  function outcomeFor(form) {
    var holder = form.parentNode.querySelector(".outcome[data-keep]");
    if (!holder) {
      holder = document.createElement("div");
      holder.className = "outcome";
      holder.setAttribute("data-keep", "");
      holder.setAttribute("data-client", "");
      form.parentNode.insertBefore(holder, form.nextSibling);
    }
    return holder;
  }

  function show(holder, lines, isError) {
    holder.textContent = "";
    lines.forEach(function (line) {
      var p = document.createElement("p");
      p.textContent = line;
      if (isError) p.className = "error";
      holder.appendChild(p);
    });
  }

  function onAction(form) {
    var done = form.getAttribute("data-action");
    busy(form, true);
    post(form.action, form).then(function () {
      busy(form, false);
      announce("Incident " + done + ".");
      return refresh();
    }).catch(function (err) {
      busy(form, false);
      var text = "Could not do it: " + err.message;
      show(outcomeFor(form), [text], true);
      announce(text);
    });
  }

  function firstResult(data) {
    if (Array.isArray(data.results) && data.results.length) return data.results[0];
    if (data.result && typeof data.result === "object") return data.result;
    return data;
  }

  function describe(result, dryRun) {
    var lines = [];
    var what = result.name || "the task";
    var args = [result.args, result.kwargs].filter(Boolean).join(" ");
    if (dryRun) {
      lines.push("Dry run: this would publish " + what +
        (result.queue ? " to queue " + result.queue : "") + " again under a new task id" +
        (args ? ", with arguments " + args : "") + ". Nothing has been published yet.");
    } else if (result.outcome === "replayed" || result.new_task_id) {
      lines.push("Replayed " + what + (result.new_task_id ? " as task " + result.new_task_id : "") +
        (result.queue ? " to queue " + result.queue : "") + ".");
    } else {
      lines.push("Not replayed (" + (result.outcome || "refused") + ")" +
        (result.reason ? ": " + result.reason : "") + ".");
    }
    return lines;
  }

  function onReplay(form) {
    var holder = outcomeFor(form);
    var confirmUrl = form.getAttribute("data-replay");
    busy(form, true);
    post(form.action, form).then(function (data) {
      var result = firstResult(data);
      if (result.outcome && result.outcome !== "dry_run") {
        show(holder, describe(result, false), true);
        announce(holder.textContent);
        busy(form, false);
        return;
      }
      show(holder, describe(result, true), false);
      var buttons = document.createElement("div");
      buttons.className = "outcome-buttons";
      var confirm = document.createElement("button");
      confirm.type = "button";
      confirm.className = "primary";
      confirm.textContent = "Replay now";
      var cancel = document.createElement("button");
      cancel.type = "button";
      cancel.textContent = "Cancel";
      buttons.appendChild(confirm);
      buttons.appendChild(cancel);
      holder.appendChild(buttons);
      announce(holder.firstChild.textContent);
      confirm.focus();
      cancel.addEventListener("click", function () {
        holder.textContent = "";
        busy(form, false);
        var again = form.querySelector("button");
        if (again) again.focus();
      });
      confirm.addEventListener("click", function () {
        confirm.disabled = true;
        cancel.disabled = true;
        post(confirmUrl, form).then(function (answer) {
          var lines = describe(firstResult(answer), false);
          show(holder, lines, false);
          announce(lines.join(" "));
          busy(form, false);
          return refresh();
        }).catch(function (err) {
          show(holder, ["Could not replay: " + err.message], true);
          announce(holder.textContent);
          busy(form, false);
        });
      });
    }).catch(function (err) {
      show(holder, ["Could not ask for a dry run: " + err.message], true);
      announce(holder.textContent);
      busy(form, false);
    });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement)) return;
    if (form.hasAttribute("data-replay")) {
      event.preventDefault();
      onReplay(form);
    } else if (form.hasAttribute("data-action")) {
      event.preventDefault();
      onAction(form);
    }
  });

  schedule();
}());
