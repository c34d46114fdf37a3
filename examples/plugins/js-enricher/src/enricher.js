// js-enricher: a Causeway bridge step written in JavaScript.
//
// It is an ordinary wasi:http/proxy component: componentize-js (StarlingMonkey) turns
// the `fetch` event below into the wasi:http/incoming-handler export. The step adds
// `"enrichedBy": "javascript"` and a `receivedAt` timestamp to a JSON object event.
//
//   POST {"order": 1}  ->  200 {"order": 1, "enrichedBy": "javascript", "receivedAt": "2025-..."}
//   POST [1, 2]        ->  400 {"error": "expected a JSON object"}
//
// Steps run at least once, so the same event (same `causeway-event-id`) may arrive
// twice. This step has no side effects, so a repeat is harmless; `receivedAt` is the
// time of the call that succeeded.

function json(status, value, extraHeaders = {}) {
  return new Response(JSON.stringify(value), {
    status,
    headers: { "content-type": "application/json", ...extraHeaders },
  });
}

async function handle(request) {
  if (request.method !== "POST" && request.method !== "PUT") {
    return json(405, { error: "send the event with POST" });
  }
  let event;
  try {
    event = JSON.parse(await request.text());
  } catch {
    return json(400, { error: "invalid JSON" });
  }
  if (event === null || typeof event !== "object" || Array.isArray(event)) {
    return json(400, { error: "expected a JSON object" });
  }
  event.enrichedBy = "javascript";
  // Date.now() reads wasi:clocks/wall-clock.
  event.receivedAt = new Date().toISOString();
  const id = request.headers.get("causeway-event-id");
  if (id) {
    console.log(`enriched event ${id}`);
  }
  return json(200, event);
}

addEventListener("fetch", (event) => event.respondWith(handle(event.request)));
