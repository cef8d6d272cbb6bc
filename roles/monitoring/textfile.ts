// node-exporter's textfile collector: the one way wpfarm's own metrics reach Prometheus (drift, update progress;
// the keepalived notify script and the Varnish collector write the same directory from the hosts themselves).
// A .prom file is written to a temporary name and renamed: the collector never reads a half-written file.
import { sh } from '../../lib/shell.ts';

/** Debian's prometheus-node-exporter reads *.prom here (its --collector.textfile.directory) */
export const TEXTFILE_DIR = '/var/lib/prometheus/node-exporter';

/** A label value in the exposition format: backslash, double quote and newline escaped. */
export function labelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** The shell command that writes its stdin to `file` atomically (tmp + rename), mode 0644, making the directory. */
export function textfileWriteCmd(file: string): string {
  if (!file.startsWith('/') || !file.endsWith('.prom')) throw new Error(`textfile: ${file} is not an absolute path to a .prom file`);
  const dir = file.slice(0, file.lastIndexOf('/')) || '/';
  return `mkdir -p ${sh`${dir}`} && cat > ${sh`${file}.tmp`} && chmod 0644 ${sh`${file}.tmp`} && mv -f ${sh`${file}.tmp`} ${sh`${file}`}`;
}
