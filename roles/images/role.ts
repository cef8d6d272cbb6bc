// images: the farm's container images, built on the controller with content-hashed tags and pushed to the farm's
// registry. Phase 3 of bootstrap runs it before wp-site: the images are built once, and again only when their
// inputs change (the build contexts in files/images, the base image, the build args); a rerun neither builds nor
// pushes. add-site, add-sites and the wp-site role never build: they check that this version's images are in the
// registry and tell the user to run phase 3 when they are not.
//
//   step            tag      what it does (roles/wp-site/images.ts: ensureImage, the one build path)
//   site images     images   wordpress-fpm, nginx (WordPress core from wordpress-fpm), redis, varnish
//   exporter image  images   wpfarm/wp-exporter (roles/wp-exporter/service.ts bundled by esbuild)
// Check mode computes the tags and lists the images that would be built and pushed. The builds need no host: a
// playbook starts them ahead of the role (its warm-up, lib/play.ts Run.warmup); the steps wait for them and push.
//
// Variables (shared with wp-site): site_base_image (lab: wpfarm/base:bookworm, else debian:bookworm-slim),
// site_images_dir (default files/images), registry (what the nodes pull from), registry_push (the same registry
// as the controller reaches it; default registry).
import { task } from '../../lib/ops/base.ts';
import type { Role, TaskOutcome } from '../../lib/types.ts';
import { ensureExporterImage, ensureSiteImages, exporterImageTag, registryHasTag } from '../wp-site/images.ts';
import { imageSettings, siteImages } from '../wp-site/reconcile.ts';

const outcome = (changes: string[], result?: unknown): TaskOutcome => ({ changed: changes.length > 0, changes, result });

const role: Role = {
  name: 'images',
  hosts: 'managers',
  tags: ['images'],
  description: "the site and exporter images: built on the controller when their content hash is new, pushed to the farm's registry",
  // bootstrap starts the builds at its start (they need no host), beside phases 1-2; the steps then push them
  warmup: async (vars, log) => {
    const s = imageSettings(vars);
    const opts = { registry: s.registryPush || undefined, push: 'when-reachable' as const, log };
    await Promise.all([ensureSiteImages(s.baseImage, opts, s.imagesDir), ensureExporterImage(s.baseImage, opts, s.imagesDir)]);
  },
  steps: () => [
    task(
      'site images',
      async (ctx) => {
        const images = await siteImages(imageSettings(ctx.vars), ctx.check, (m) => ctx.log(m));
        return outcome(images.changes, images);
      },
      { runOnce: true, tags: ['images'] },
    ),
    task(
      'exporter image',
      async (ctx) => {
        const s = imageSettings(ctx.vars);
        if (ctx.check) {
          const tag = await exporterImageTag(s.baseImage, s.imagesDir);
          const have = s.registryPush ? await registryHasTag(s.registryPush, 'wpfarm/wp-exporter', tag).catch(() => false) : false;
          return outcome(have ? [] : [`image wpfarm/wp-exporter:${tag} would be built and pushed`]);
        }
        const r = await ensureExporterImage(s.baseImage, { registry: s.registryPush || undefined, log: (l) => ctx.log(l) }, s.imagesDir);
        const changes = [...(r.built ? [`image ${r.ref} built`] : []), ...(r.pushed ? [`image ${r.ref} pushed`] : [])];
        return outcome(changes, { ref: r.ref });
      },
      { runOnce: true, tags: ['images'] },
    ),
  ],
};

export default role;
