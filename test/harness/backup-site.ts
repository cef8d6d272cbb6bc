// A "lab site" for backup tests: a WordPress-shaped database (posts, postmeta, options, users, a binary
// table, a trigger) and a wp-content tree (uploads, plugins, themes; binary files, odd names, modes).
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile, chmod, rm, readdir, unlink, appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { LocalMariaDb } from './backup-mariadb.ts';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const esc = (s: string) => s.replace(/\\/g, '\\\\').replace(/'/g, "\\'");

export async function createSiteDb(mdb: LocalMariaDb, db: string, posts = 1500): Promise<void> {
  await mdb.sql(`DROP DATABASE IF EXISTS ${db}; CREATE DATABASE ${db} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`);
  await mdb.sql(
    [
      'CREATE TABLE wp_options (option_id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY, option_name VARCHAR(191) NOT NULL UNIQUE, option_value LONGTEXT NOT NULL, autoload VARCHAR(20) NOT NULL DEFAULT "yes")',
      'CREATE TABLE wp_posts (ID BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY, post_author BIGINT UNSIGNED NOT NULL, post_date DATETIME NOT NULL, post_title TEXT NOT NULL, post_content LONGTEXT NOT NULL, post_status VARCHAR(20) NOT NULL, comment_count BIGINT NOT NULL DEFAULT 0, KEY (post_status, post_date))',
      'CREATE TABLE wp_postmeta (meta_id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY, post_id BIGINT UNSIGNED NOT NULL, meta_key VARCHAR(255), meta_value LONGTEXT, KEY (post_id))',
      'CREATE TABLE wp_users (ID BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY, user_login VARCHAR(60) NOT NULL, user_pass VARCHAR(255) NOT NULL, user_email VARCHAR(100) NOT NULL)',
      'CREATE TABLE wp_blobs (id INT PRIMARY KEY, data LONGBLOB NOT NULL)',
      'CREATE TABLE wp_audit (id BIGINT AUTO_INCREMENT PRIMARY KEY, post_id BIGINT, changed_at DATETIME)',
      'CREATE TRIGGER wp_posts_audit AFTER UPDATE ON wp_posts FOR EACH ROW INSERT INTO wp_audit (post_id, changed_at) VALUES (NEW.ID, "2026-01-01 00:00:00")',
    ].join(';\n'),
    db,
  );
  const r = rng(posts);
  const words = [
    'wordpress',
    'farm',
    'swarm',
    'galera',
    'backup',
    'restore',
    'café',
    'naïve',
    'Grüße',
    '日本語',
    '😀',
    "it's",
    'back\\slash',
    '"quoted"',
    '<b>html</b>',
    '\ttab',
  ];
  const text = (n: number) => Array.from({ length: n }, () => words[Math.floor(r() * words.length)]).join(' ');
  await mdb.sql(
    `INSERT INTO wp_options (option_name, option_value) VALUES ('siteurl', 'https://site1.lab.test'), ('home', 'https://site1.lab.test'), ('blogname', '${esc(text(4))}'), ('active_plugins', 'a:1:{i:0;s:19:"akismet/akismet.php";}')`,
    db,
  );
  await mdb.sql(
    `INSERT INTO wp_users (user_login, user_pass, user_email) VALUES ('admin', '$P$Babcdefghijklmnopqrstuv', 'admin@site1.lab.test'), ('editor', '$P$Bzyxwvutsrqponmlkjihgf', 'ed@site1.lab.test')`,
    db,
  );
  for (let i = 0; i < posts; i += 250) {
    const rows: string[] = [];
    const meta: string[] = [];
    for (let j = i; j < Math.min(posts, i + 250); j++) {
      const d = new Date(Date.UTC(2020, 0, 1) + Math.floor(r() * 6 * 365) * 86_400_000).toISOString().slice(0, 19).replace('T', ' ');
      rows.push(
        `(${j + 1}, 1, '${d}', '${esc(text(6))}', '${esc(text(60 + Math.floor(r() * 200)))}', '${r() < 0.9 ? 'publish' : 'draft'}', ${Math.floor(r() * 40)})`,
      );
      meta.push(`(${j + 1}, '_edit_last', '1'), (${j + 1}, '_wp_page_template', '${esc(text(2))}')`);
    }
    await mdb.sql(
      `INSERT INTO wp_posts (ID, post_author, post_date, post_title, post_content, post_status, comment_count) VALUES ${rows.join(',')}`,
      db,
    );
    await mdb.sql(`INSERT INTO wp_postmeta (post_id, meta_key, meta_value) VALUES ${meta.join(',')}`, db);
  }
  await mdb.sql('INSERT INTO wp_blobs (id, data) SELECT seq, RANDOM_BYTES(1024) FROM seq_1_to_200', db);
}

/** Change the site: update, delete and insert rows (fires the trigger). */
export async function mutateSiteDb(mdb: LocalMariaDb, db: string): Promise<void> {
  await mdb.sql(
    [
      "UPDATE wp_posts SET post_title = CONCAT(post_title, ' (edited)'), comment_count = comment_count + 1 WHERE ID % 7 = 0",
      'DELETE FROM wp_postmeta WHERE post_id % 11 = 0',
      "INSERT INTO wp_options (option_name, option_value) VALUES ('new_option', 'added after the first backup')",
      "UPDATE wp_options SET option_value = 'Renamed blog 😀' WHERE option_name = 'blogname'",
      'DELETE FROM wp_blobs WHERE id > 150',
    ].join(';\n'),
    db,
  );
}

/** Destroy the site's rows (every table emptied, one table dropped). */
export async function destroySiteDb(mdb: LocalMariaDb, db: string): Promise<void> {
  await mdb.sql(
    'DELETE FROM wp_posts; DELETE FROM wp_postmeta; DELETE FROM wp_options; DELETE FROM wp_users; DROP TABLE wp_blobs; DELETE FROM wp_audit',
    db,
  );
}

/** Add a big incompressible table (for multipart uploads of many parts). */
export async function addBigTable(mdb: LocalMariaDb, db: string, mib: number): Promise<void> {
  await mdb.sql('CREATE TABLE IF NOT EXISTS wp_big (id INT PRIMARY KEY, data LONGBLOB NOT NULL)', db);
  const rows = mib * 64; // 16 KiB per row
  const piece = Array.from({ length: 16 }, () => 'RANDOM_BYTES(1024)').join(', ');
  for (let i = 0; i < rows; i += 1024) {
    await mdb.sql(`INSERT INTO wp_big (id, data) SELECT seq, CONCAT(${piece}) FROM seq_${i + 1}_to_${Math.min(rows, i + 1024)}`, db);
  }
}

export async function createSiteFiles(root: string): Promise<void> {
  await mkdir(join(root, 'uploads/2026/11'), { recursive: true });
  await mkdir(join(root, 'uploads/2025/01'), { recursive: true });
  await mkdir(join(root, 'plugins/akismet'), { recursive: true });
  await mkdir(join(root, 'themes/twentytwentyfour/assets'), { recursive: true });
  for (let i = 0; i < 12; i++) await writeFile(join(root, `uploads/2026/11/photo-${i}.jpg`), randomBytes(20_000 + i * 3_000));
  for (let i = 0; i < 5; i++) await writeFile(join(root, `uploads/2025/01/doc ${i} é.pdf`), randomBytes(50_000));
  await writeFile(join(root, 'uploads/2025/01/empty.txt'), '');
  await writeFile(join(root, 'plugins/akismet/akismet.php'), '<?php\n/* Plugin Name: Akismet */\n');
  await writeFile(join(root, 'themes/twentytwentyfour/style.css'), '/* Theme Name: Twenty Twenty-Four */\nbody{}\n');
  await writeFile(join(root, 'themes/twentytwentyfour/assets/logo.png'), randomBytes(8_000));
  await writeFile(join(root, 'plugins/akismet/secret-config.php'), '<?php // 0600\n');
  await chmod(join(root, 'plugins/akismet/secret-config.php'), 0o600);
}

export async function mutateSiteFiles(root: string): Promise<void> {
  await writeFile(join(root, 'uploads/2026/11/photo-0.jpg'), randomBytes(21_000));
  await unlink(join(root, 'uploads/2026/11/photo-1.jpg'));
  await writeFile(join(root, 'uploads/2026/11/new-after-first-backup.webp'), randomBytes(9_000));
  await appendFile(join(root, 'themes/twentytwentyfour/style.css'), 'a{color:red}\n');
}

export async function destroySiteFiles(root: string): Promise<void> {
  for (const e of await readdir(root)) await rm(join(root, e), { recursive: true, force: true });
  await writeFile(join(root, 'defaced.html'), '<h1>owned</h1>');
}
