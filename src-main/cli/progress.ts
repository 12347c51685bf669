/** Progress on stderr: a single updating line on a terminal, sparse plain lines otherwise. */
export function progressPrinter(label: string): { update: (p: { done: number; total: number }) => void; done: () => void } {
  const tty = process.stderr.isTTY;
  const t0 = Date.now();
  let lastPct = -1;
  return {
    update({ done, total }) {
      const pct = Math.floor((100 * done) / Math.max(1, total));
      if (pct === lastPct) return;
      lastPct = pct;
      const el = (Date.now() - t0) / 1000;
      const eta = done ? (el / done) * (total - done) : 0;
      const line = `${label} ${pct}% (${done}/${total}) ${el.toFixed(1)}s elapsed, ~${eta.toFixed(1)}s left`;
      if (tty) process.stderr.write(`\r${line}\x1b[K`);
      else if (pct % 25 === 0) process.stderr.write(line + '\n');
    },
    done() {
      if (tty && lastPct >= 0) process.stderr.write('\n');
    },
  };
}
