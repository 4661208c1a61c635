import assert from "node:assert/strict";
import { applyImageChunk, applyImageDone, IMAGE_CHUNK_BYTES, sha256 } from "./images.ts";
import { Store } from "./store.ts";
import type { ImageTables } from "./storage/image_tables.ts";

function withImages(f: (images: ImageTables) => void): void {
  const store = Store.inMemory("images-test", {
    identity: { clusterId: "ab".repeat(16), nodeId: 1, groupId: 1 },
    secret: new Uint8Array(32).fill(1),
    conf: { voters: [1], learners: [] },
  });
  try {
    f(store.images);
  } finally {
    store.close();
  }
}

function bytes(n: number, seed: number): Uint8Array {
  return new Uint8Array(n).map((_, i) => (i * 31 + seed) & 0xff);
}

function hex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

function chunk(epoch: number, offset: number, data: Uint8Array) {
  return { epoch, offset, sha256: sha256(data), data };
}

Deno.test("an image grows by contiguous chunks and completes when size and SHA-256 match", () => {
  withImages((images) => {
    const a = bytes(100, 1);
    const b = bytes(50, 2);
    assert.equal(applyImageChunk(images, 5n, chunk(7, 0, a)), undefined);
    assert.equal(applyImageChunk(images, 5n, chunk(7, 100, b)), undefined);
    assert.deepEqual(images.list(5n), [{ epoch: 7, size: 150 }]);
    assert.deepEqual(images.chunk(5n, 7, 100), b);

    const whole = new Uint8Array([...a, ...b]);
    assert.match(
      applyImageDone(images, 5n, { epoch: 7, size: 149, sha256: sha256(whole) })!,
      /has 150 bytes, not the 149 announced/,
    );
    assert.match(
      applyImageDone(images, 5n, { epoch: 7, size: 150, sha256: sha256(a) })!,
      /does not match the SHA-256 announced/,
    );
    assert.deepEqual(images.get(5n, 7), { epoch: 7, size: 150 }, "still incomplete");
    assert.equal(
      applyImageDone(images, 5n, { epoch: 7, size: 150, sha256: sha256(whole) }),
      undefined,
    );
    assert.deepEqual(images.get(5n, 7), { epoch: 7, size: 150, sha256: hex(sha256(whole)) });

    // Complete: re-applied (a restart) it changes nothing; other bytes are refused.
    assert.equal(
      applyImageDone(images, 5n, { epoch: 7, size: 150, sha256: sha256(whole) }),
      undefined,
    );
    assert.match(
      applyImageDone(images, 5n, { epoch: 7, size: 150, sha256: sha256(a) })!,
      /complete with another checksum/,
    );
    assert.equal(applyImageChunk(images, 5n, chunk(7, 0, a)), undefined, "same bytes: skipped");
    assert.match(applyImageChunk(images, 5n, chunk(7, 150, b))!, /image is complete/);
  });
});

Deno.test("image chunks are refused for a bad checksum, a bad size, a gap or other bytes", () => {
  withImages((images) => {
    const a = bytes(100, 1);
    assert.match(
      applyImageChunk(images, 5n, { ...chunk(1, 0, a), sha256: sha256(bytes(100, 2)) })!,
      /does not match its checksum/,
    );
    assert.match(applyImageChunk(images, 5n, chunk(1, 0, new Uint8Array(0)))!, /holds 1 to/);
    assert.match(
      applyImageChunk(images, 5n, chunk(1, 0, new Uint8Array(IMAGE_CHUNK_BYTES + 1)))!,
      /holds 1 to/,
    );
    assert.deepEqual(images.list(5n), [], "refused chunks store nothing");
    assert.equal(applyImageChunk(images, 5n, chunk(1, 0, a)), undefined);
    assert.match(
      applyImageChunk(images, 5n, chunk(1, 200, a))!,
      /a chunk at 200 would leave a gap/,
    );
    assert.match(
      applyImageChunk(images, 5n, chunk(1, 0, bytes(100, 9)))!,
      /already has other bytes at offset 0/,
    );
    assert.match(
      applyImageDone(images, 5n, { epoch: 2, size: 0, sha256: sha256(a) })!,
      /no image chunks/,
    );
    assert.deepEqual(images.list(5n), [{ epoch: 1, size: 100 }]);
  });
});

Deno.test("images are per ship and epoch, and go with their ship", () => {
  withImages((images) => {
    const a = bytes(10, 1);
    for (const [ship, epoch] of [[5n, 1], [5n, 2], [6n, 1]] as const) {
      assert.equal(applyImageChunk(images, ship, chunk(epoch, 0, a)), undefined);
    }
    assert.deepEqual(images.list(5n).map((i) => i.epoch), [1, 2]);
    images.deleteShip(5n);
    assert.deepEqual(images.list(5n), []);
    assert.equal(images.chunk(5n, 1, 0), undefined);
    assert.deepEqual(images.list(6n), [{ epoch: 1, size: 10 }]);
  });
});
