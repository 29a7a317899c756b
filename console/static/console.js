// paynotify console: copy buttons, live updates (long-poll), and the demo's create form.
// No framework and no build step (docs/console.md).
'use strict';

document.addEventListener('click', (ev) => {
  const b = ev.target.closest('button.copy');
  if (!b) return;
  const text = b.dataset.copy;
  const done = () => { b.textContent = 'copied'; setTimeout(() => { b.textContent = 'copy'; }, 1200); };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, () => selectCode(b));
  } else {
    selectCode(b);
  }
});

// selectCode selects the id next to the button, for Ctrl-C where the clipboard API is not allowed.
function selectCode(b) {
  const code = b.parentElement.querySelector('code');
  const r = document.createRange();
  r.selectNodeContents(code);
  const s = window.getSelection();
  s.removeAllRanges();
  s.addRange(r);
}

// Live updates: a page with data-live long-polls /console/wait and reloads when what it shows
// has changed (a notification arrived, the order moved).
async function live() {
  const body = document.body;
  const q = body.dataset.live;
  if (!q) return;
  let stamp = body.dataset.stamp || '';
  for (;;) {
    try {
      const r = await fetch('/console/wait?' + q + '&stamp=' + encodeURIComponent(stamp), {credentials: 'same-origin'});
      if (!r.ok) { await sleep(5000); continue; }
      const j = await r.json();
      if (j.stamp !== stamp) {
        // Keep open what the operator opened.
        sessionStorage.setItem('open', JSON.stringify([...document.querySelectorAll('details[open]')].map(d => indexOf(d))));
        // The reload is not the operator's: it must not keep the session alive (cleared on load).
        document.cookie = 'paynotify_live=1; path=/; max-age=30; samesite=strict';
        location.reload();
        return;
      }
    } catch (e) {
      await sleep(5000);
    }
  }
}

function sleep(ms) { return new Promise(r => setTimeout(r, ms)); }
function indexOf(d) { return [...document.querySelectorAll('details')].indexOf(d); }

function reopen() {
  const open = JSON.parse(sessionStorage.getItem('open') || '[]');
  sessionStorage.removeItem('open');
  const all = document.querySelectorAll('details');
  for (const i of open) if (all[i]) all[i].open = true;
}

// The demo's create form: POST /v1/orders with the demo's token, then the order's page.
function demo() {
  const form = document.getElementById('create');
  if (!form) return;
  const token = document.getElementById('token').textContent;
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const opt = form.channel.selectedOptions[0];
    const req = {app: opt.dataset.app, channel: form.channel.value, amount: parseInt(form.amount.value, 10), subject: form.subject.value};
    if (req.channel === 'wechatpay.jsapi') req.payer_openid = 'oDemoOpenID000000000000000000';
    if (req.channel === 'wechatpay.h5') req.payer_client_ip = '127.0.0.1';
    const r = await fetch('/v1/orders', {method: 'POST', headers: {'Authorization': 'Bearer ' + token, 'Content-Type': 'application/json'}, body: JSON.stringify(req)});
    const o = await r.json();
    if (o.error) {
      const e = document.getElementById('create-error');
      e.textContent = o.error.message; e.hidden = false;
      return;
    }
    location.href = '/console/orders/' + encodeURIComponent(o.app) + '/' + encodeURIComponent(o.out_trade_no);
  });
}

// A page that loaded ends the mark of a live reload, so that what the operator does next counts.
document.cookie = 'paynotify_live=; path=/; max-age=0; samesite=strict';
document.addEventListener('DOMContentLoaded', () => { reopen(); demo(); live(); });
