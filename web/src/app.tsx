/** The shell: header (brand, navigation, connection indicator), the login gate and the routed page. */
import { useEffect } from 'preact/hooks';
import { auth$, probeLogin } from './lib/api.ts';
import { linkProps, useRoute } from './lib/router.ts';
import { useStore } from './lib/store.ts';
import { ConnectionIndicator } from './components/ConnectionIndicator.tsx';
import { TaskListPage } from './pages/TaskList.tsx';
import { TaskPage } from './pages/TaskPage.tsx';
import { ComponentsPage } from './pages/ComponentsPage.tsx';
import { LoginPage } from './pages/LoginPage.tsx';

export function App() {
  const auth = useStore(auth$);
  const route = useRoute();
  useEffect(() => {
    void probeLogin();
  }, []);
  return (
    <>
      <header class="topbar">
        <a class="brand" {...linkProps('/')}>
          <span class="brand-mark" aria-hidden="true" />
          Warden
        </a>
        <nav>
          <a {...linkProps('/')} class={route.page === 'tasks' || route.page === 'task' ? 'active' : ''}>
            Tasks
          </a>
          <a {...linkProps('/components')} class={route.page === 'components' ? 'active' : ''}>
            Components
          </a>
        </nav>
        <span class="spacer" />
        {auth === 'needed' ? (
          <span id="conn" class="conn conn-offline" data-status="unauthorized">
            <span class="conn-dot" aria-hidden="true" />
            <span class="conn-label">not logged in</span>
          </span>
        ) : (
          <ConnectionIndicator />
        )}
      </header>
      <main class="content">
        {auth === 'needed' && <LoginPage />}
        {auth === 'ok' && <Page route={route} />}
      </main>
    </>
  );
}

function Page({ route }: { route: ReturnType<typeof useRoute> }) {
  switch (route.page) {
    case 'tasks':
      return <TaskListPage />;
    case 'task':
      return <TaskPage key={route.id} id={route.id} />;
    case 'components':
      return <ComponentsPage />;
    case 'not-found':
      return (
        <section class="panel pad">
          <p>
            No page at <code>{route.path}</code>. <a {...linkProps('/')}>Back to the tasks</a>.
          </p>
        </section>
      );
  }
}
