// The live view (lib/output.ts ConsoleReporter) on a fake TTY: every row of the live block fits the terminal's
// width (a row that wraps takes two lines, and the redraw, which moves up one line per row, would leave debris).
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { EventStream } from '../../lib/events.ts';
import { ConsoleReporter, fitRow } from '../../lib/output.ts';
import { clearSecretsForTests, registerSecret } from '../../lib/secrets.ts';

/** A terminal of `columns` columns: records what is written. */
function fakeTty(columns: number): Writable & { isTTY: true; columns: number; text: string } {
  const w = new Writable({
    write(chunk: Buffer, _enc, cb) {
      (w as unknown as { text: string }).text += chunk.toString();
      cb();
    },
  }) as Writable & { isTTY: true; columns: number; text: string };
  w.isTTY = true;
  w.columns = columns;
  w.text = '';
  return w;
}

const ESC = String.fromCharCode(27);
const COLOUR = new RegExp(`${ESC}\\[\\d*m`, 'g');
const CLEAR = new RegExp(`${ESC}\\[(\\d+)A${ESC}\\[0J`, 'g');

/** The rows of every live block drawn: the lines between a clear (ESC[nA ESC[0J) and the next write. */
function visibleLines(text: string): string[] {
  // strip colours; split on the cursor moves the redraw makes
  const plain = text.replace(COLOUR, '');
  return plain
    .split(CLEAR)
    .flatMap((chunk) => chunk.split('\n'))
    .filter((l) => l.length > 0);
}

test('fitRow cuts to the width with an ellipsis, turns control characters into spaces', () => {
  assert.equal(fitRow('abcdef', 10), 'abcdef');
  assert.equal(fitRow('abcdefghijkl', 6), 'abcde…');
  assert.equal([...fitRow('ééééééééé', 5)].length, 5);
  assert.equal(fitRow('a\nb\tc', 10), 'a b c');
});

test('live rows never exceed the terminal width; the block is cleared by exactly the rows it drew', () => {
  for (const columns of [20, 40, 80]) {
    const out = fakeTty(columns);
    const view = new ConsoleReporter({ verbose: 0, out, live: true, color: true });
    const events = new EventStream();
    events.on(view.listener);
    const hosts = ['web-frontend-number-01.example.org', 'h2', 'a-very-long-host-name-that-goes-on-and-on'];
    events.emit({ kind: 'role.start', role: 'demo', hosts });
    for (const h of hosts) events.emit({ kind: 'host.start', host: h, role: 'demo' });
    for (const h of hosts) {
      const step = `file /srv/some/deeply/nested/path/with/a/long/name/${h}/config.conf\nsecond line`;
      events.emit({ kind: 'step.start', host: h, role: 'demo', step, stepKind: 'file' });
      events.say('a line printed above the live block');
    }
    view.finish();
    const moves = [...out.text.matchAll(CLEAR)].map((m) => Number(m[1]));
    assert.ok(moves.length >= 3, 'the block was redrawn');
    for (const line of visibleLines(out.text)) {
      if (!line.startsWith('  … ')) continue;
      assert.ok(
        [...line].length <= columns - 1,
        `row of ${[...line].length} chars on a ${columns}-column terminal: ${JSON.stringify(line)}`,
      );
    }
    // every clear moves up by the number of rows the previous draw wrote (3 hosts: 3 rows)
    assert.ok(
      moves.every((n) => n <= 3),
      `moves ${moves.join(',')}`,
    );
  }
});

test('the live view masks secrets in step titles', () => {
  clearSecretsForTests();
  registerSecret('hunter2-secret');
  const out = fakeTty(200);
  const view = new ConsoleReporter({ verbose: 0, out, live: true, color: false });
  const events = new EventStream();
  events.on(view.listener);
  events.emit({ kind: 'host.start', host: 'h1', role: 'r' });
  events.emit({ kind: 'step.start', host: 'h1', role: 'r', step: 'login with hunter2-secret', stepKind: 'task' });
  events.say('tick');
  view.finish();
  assert.ok(!out.text.includes('hunter2-secret'));
  assert.match(out.text, /login with \*\*\*/);
  clearSecretsForTests();
});
