// The console's only script: the events list updates itself from the server-sent
// events of /events/stream (EventSource). Rows are built from text nodes, never from
// HTML strings. Without this script every page still works; the list is then as loaded.
(function () {
  'use strict';
  var table = document.getElementById('events');
  if (!table || !table.dataset.stream || !window.EventSource) {
    return;
  }
  var tbody = table.tBodies[0];
  var live = document.getElementById('live');
  var added = 0;

  function cell(child) {
    var td = document.createElement('td');
    if (typeof child === 'string') {
      td.textContent = child;
    } else {
      td.appendChild(child);
    }
    return td;
  }

  function row(ev) {
    var tr = document.createElement('tr');
    tr.id = 'ev-' + ev.id;
    tr.className = 'new';
    var time = document.createElement('time');
    time.dateTime = ev.receivedAt;
    time.textContent = ev.receivedAt;
    tr.appendChild(cell(time));
    var link = document.createElement('a');
    link.href = '/events/' + encodeURIComponent(ev.id);
    var code = document.createElement('code');
    code.textContent = ev.id;
    link.appendChild(code);
    tr.appendChild(cell(link));
    tr.appendChild(cell(ev.bridge));
    var badge = document.createElement('span');
    badge.className = 'status status-' + ev.status;
    badge.textContent = ev.status;
    tr.appendChild(cell(badge));
    tr.appendChild(cell(ev.reason || ''));
    return tr;
  }

  var source = new EventSource(table.dataset.stream);
  source.addEventListener('events', function (msg) {
    var events;
    try {
      events = JSON.parse(msg.data);
    } catch (e) {
      return;
    }
    events.forEach(function (ev) {
      if (document.getElementById('ev-' + ev.id)) {
        return;
      }
      var empty = document.getElementById('no-events');
      if (empty) {
        empty.remove();
      }
      tbody.insertBefore(row(ev), tbody.firstChild);
      added += 1;
    });
    if (live) {
      live.textContent = 'Live: ' + added + (added === 1 ? ' new event' : ' new events') +
        ' since the page loaded.';
    }
  });
})();
