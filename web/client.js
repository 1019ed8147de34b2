// Patch-stream client: holds the kernel's state document, applies `{seq, ts, ops}` envelopes
// (RFC 6902) in order, and resyncs from a snapshot when it sees a gap or reconnects. The socket
// authenticates with the login cookie; a refused one calls `onUnauthorized` instead of retrying.
import { applyPatch, deepClone } from '/vendor/fast-json-patch/index.mjs';

export class StateClient {
  constructor(onChange, onUnauthorized) {
    this.onChange = onChange;
    this.onUnauthorized = onUnauthorized;
    this.seq = -1;
    this.state = null;
    this.closed = false;
  }

  connect() {
    const since = this.seq >= 0 ? `?since=${this.seq}` : '';
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/stream${since}`;
    this.socket = new WebSocket(url);
    let opened = false;
    this.socket.onopen = () => (opened = true);
    this.socket.onmessage = (event) => this.receive(JSON.parse(event.data));
    this.socket.onclose = async () => {
      if (this.closed) return;
      // A refused upgrade is only a close to the page: ask the REST side whether a login is missing.
      const status = opened ? 0 : await fetch('/api/state').then((r) => r.status, () => 0);
      if (status === 401) this.onUnauthorized();
      else setTimeout(() => this.connect(), 500);
    };
  }

  receive(message) {
    if (message.type === 'snapshot') {
      this.state = message.state;
      this.seq = message.seq;
    } else {
      if (message.seq !== this.seq + 1) {
        // A gap: drop the connection and resume from the last applied seq.
        this.socket.close();
        return;
      }
      this.state = applyPatch(deepClone(this.state), message.ops, false, true).newDocument;
      this.seq = message.seq;
    }
    this.onChange(this.state, this.seq);
  }

  close() {
    this.closed = true;
    this.socket?.close();
  }
}
