/** The login form shown when the kernel answers 401: paste an API key (`POST /api/login` sets the HttpOnly cookie). */
import { useState } from 'preact/hooks';
import { ApiError, login } from '../lib/api.ts';

export function LoginPage() {
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const onSubmit = async (event: Event) => {
    event.preventDefault();
    const form = event.currentTarget as HTMLFormElement;
    const key = String(new FormData(form).get('key') ?? '');
    setBusy(true);
    setError('');
    try {
      await login(key);
      form.reset();
    } catch (err) {
      setError(err instanceof ApiError ? err.message : `could not reach the kernel: ${String(err)}`);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form id="login" class="panel form login" onSubmit={(e) => void onSubmit(e)}>
      <header class="panel-head">
        <h2>Log in</h2>
      </header>
      <div class="pad">
        <p class="muted">
          Open the one-time link <code>warden serve</code> printed, or paste an API key (<code>warden key create NAME</code>).
        </p>
        <label>
          <span>API key</span>
          <input name="key" type="password" required autocomplete="off" placeholder="wdn_…" />
        </label>
        <button type="submit" class="btn btn-primary btn-block" disabled={busy}>
          {busy ? 'Checking…' : 'Log in'}
        </button>
        <p id="login-error" class="error-text" role="alert">
          {error}
        </p>
      </div>
    </form>
  );
}
