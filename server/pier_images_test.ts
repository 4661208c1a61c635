import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import type { ClusterClient, ShipWriteCommand } from "../cluster/api.ts";
import { IMAGE_CHUNK_BYTES, type ImageInfo } from "../cluster/images.ts";
import { hex } from "../tests/fixtures.ts";
import { NodeError } from "./errors.ts";
import { downloadImage, type ImageProgress, importImages } from "./pier_images.ts";

/** An image of two and a half chunks, each byte a function of its offset. */
const IMAGE = Uint8Array.from({ length: IMAGE_CHUNK_BYTES * 2.5 }, (_, i) => (i * 31) & 0xff);
const IMAGE_SHA256 = createHash("sha256").update(IMAGE).digest("hex");

/** The two calls the image functions make, recorded; chunks are served from `IMAGE`. */
function fakeClient(serve: Uint8Array = IMAGE) {
  const writes: ShipWriteCommand[] = [];
  const client = {
    ships: {
      write(command: ShipWriteCommand) {
        // Copied as the real client's encoding does: the caller reuses its buffer.
        writes.push(
          command.kind === "imageChunk" ? { ...command, data: command.data.slice() } : command,
        );
        return Promise.resolve({ appended: 0, skipped: 0 });
      },
      imageChunk(_ship: bigint, _epoch: number, offset: number) {
        return Promise.resolve(serve.slice(offset, offset + IMAGE_CHUNK_BYTES));
      },
    },
  } as unknown as ClusterClient;
  return { client, writes };
}

/** An epoch directory holding `IMAGE` as its image.bin, removed after `f`. */
async function withEpoch(f: (epochDir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "seguro-images-test-" });
  try {
    Deno.writeFileSync(join(dir, "image.bin"), IMAGE);
    await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function chunkOffsets(writes: ShipWriteCommand[]): number[] {
  return writes.flatMap((w) => w.kind === "imageChunk" ? [w.offset] : []);
}

Deno.test("importImages: sends the chunks the cluster lacks, then the whole file's hash", async () => {
  await withEpoch(async (dir) => {
    const epochs = [{ epoch: 100, parts: [join(dir, "image.bin")], where: join(dir, "image.bin") }];
    const fresh = fakeClient();
    const seen: ImageProgress[] = [];
    const sent = await importImages(fresh.client, 5n, {
      snapshots: epochs,
      held: [],
      progress: (p) => seen.push(p),
    });
    assert.equal(sent, IMAGE.length);
    assert.deepEqual(chunkOffsets(fresh.writes), [0, IMAGE_CHUNK_BYTES, 2 * IMAGE_CHUNK_BYTES]);
    const done = fresh.writes.at(-1)!;
    assert.ok(done.kind === "imageDone" && done.size === IMAGE.length && done.epoch === 100);
    assert.equal(hex(done.sha256), IMAGE_SHA256);
    assert.deepEqual(seen.filter((p) => p.kind === "imageStored").map((p) => p.size), [
      IMAGE.length,
    ]);

    // Resumed after the first chunk: the rest only.
    const resumed = fakeClient();
    const held: ImageInfo[] = [{ epoch: 100, size: IMAGE_CHUNK_BYTES }];
    assert.equal(
      await importImages(resumed.client, 5n, { snapshots: epochs, held }),
      IMAGE.length - IMAGE_CHUNK_BYTES,
    );
    assert.deepEqual(chunkOffsets(resumed.writes), [IMAGE_CHUNK_BYTES, 2 * IMAGE_CHUNK_BYTES]);

    // Complete on the cluster: checked, nothing sent.
    const complete = fakeClient();
    const same = [{ epoch: 100, size: IMAGE.length, sha256: IMAGE_SHA256 }];
    assert.equal(await importImages(complete.client, 5n, { snapshots: epochs, held: same }), 0);
    assert.deepEqual(complete.writes, []);
  });
});

Deno.test("importImages: a pier that does not match the cluster's image is refused", async () => {
  await withEpoch(async (dir) => {
    const epochs = [{ epoch: 100, parts: [join(dir, "image.bin")], where: join(dir, "image.bin") }];
    const other = [{ epoch: 100, size: IMAGE.length, sha256: "ab".repeat(32) }];
    await assert.rejects(
      importImages(fakeClient().client, 5n, { snapshots: epochs, held: other }),
      (e) =>
        e instanceof NodeError &&
        e.message ===
          "the cluster holds another image for epoch 100 (SHA-256 abababababababab...); this pier does not match it",
    );
    const more = [{ epoch: 100, size: IMAGE.length + 1 }];
    await assert.rejects(
      importImages(fakeClient().client, 5n, { snapshots: epochs, held: more }),
      (e) =>
        e instanceof NodeError &&
        e.message === `the cluster holds more of epoch 100's image than ${dir}/image.bin has`,
    );
  });
});

Deno.test("downloadImage: writes the image and checks its hash; a short or other image fails", async () => {
  await withEpoch(async (dir) => {
    const image = { epoch: 100, size: IMAGE.length, sha256: IMAGE_SHA256 };
    const path = join(dir, "copy");
    await downloadImage(fakeClient().client, 5n, { image, path });
    assert.deepEqual(Deno.readFileSync(path), IMAGE);

    const short = fakeClient(IMAGE.subarray(0, IMAGE_CHUNK_BYTES)).client;
    await assert.rejects(
      downloadImage(short, 5n, { image, path: join(dir, "short") }),
      (e) =>
        e instanceof NodeError &&
        e.message === `the node has no chunk at ${IMAGE_CHUNK_BYTES} of epoch 100's image`,
    );
    const other = { ...image, sha256: "cd".repeat(32) };
    await assert.rejects(
      downloadImage(fakeClient().client, 5n, { image: other, path: join(dir, "other") }),
      /epoch 100's image read back with SHA-256 [0-9a-f]{16}\.\.\., not the cdcdcdcdcdcdcdcd\.\.\. recorded/,
    );
  });
});
