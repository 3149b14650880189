/** Reading an artifact from anywhere (URL, directory, bundled assets) and checking its files. */
import { ArtifactError } from "./errors.js";
import { MANIFEST_NAME, type Manifest, parseManifest, requiredFiles } from "./manifest.js";

/** Where an artifact's files come from: a web base URL, a Node directory, app assets. */
export interface ArtifactSource {
  /** The artifact's location, for error messages. */
  readonly where: string;
  /** The bytes of one file of the artifact, or null when it does not exist. */
  read(name: string): Promise<Uint8Array | null>;
}

/** A validated manifest and the bytes of every file a session needs. */
export interface LoadedArtifact {
  where: string;
  manifest: Manifest;
  files: Map<string, Uint8Array>;
  labels: string[];
}

/** Read `manifest.json` and every file it names; sizes always, sha256 with `verify`. */
export async function loadArtifact(source: ArtifactSource, verify = false): Promise<LoadedArtifact> {
  const where = source.where;
  const manifestBytes = await source.read(MANIFEST_NAME);
  if (manifestBytes === null) {
    throw new ArtifactError(`${where} is not an artifact: it has no ${MANIFEST_NAME}`);
  }
  const manifest = parseManifest(new TextDecoder().decode(manifestBytes), `${where}/${MANIFEST_NAME}`);
  const names = [...new Set(requiredFiles(manifest))];
  const contents = await Promise.all(names.map((name) => source.read(name)));
  const files = new Map<string, Uint8Array>();
  names.forEach((name, i) => {
    const bytes = contents[i];
    if (bytes === null) {
      throw new ArtifactError(`${where}: the manifest names '${name}', which is missing; ` +
        "re-export the artifact");
    }
    files.set(name, bytes);
  });
  for (const [name, bytes] of files) {
    const listed = manifest.files?.[name];
    if (listed && listed.size !== bytes.length) {
      throw new ArtifactError(`${where}/${name} has ${bytes.length} bytes, the manifest says ` +
        `${listed.size}: the file is damaged or incomplete; copy the artifact again`);
    }
    if (verify && listed) await checkHash(`${where}/${name}`, bytes, listed.sha256);
  }
  const labels = new TextDecoder().decode(files.get(manifest.labels)).split("\n")
    .map((line) => line.trim()).filter((line) => line.length > 0);
  return { where, manifest, files, labels };
}

async function checkHash(path: string, bytes: Uint8Array, expected: string): Promise<void> {
  const subtle = globalThis.crypto?.subtle;
  if (!subtle) throw new ArtifactError("verify needs crypto.subtle, which this platform lacks");
  const digest = new Uint8Array(await subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  const hex = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
  if (hex !== expected.toLowerCase()) {
    throw new ArtifactError(`${path}: sha256 ${hex} differs from the manifest's ${expected}: ` +
      "the file is damaged; copy the artifact again");
  }
}

/** Files fetched over HTTP(S) below a base URL (browsers, React Native asset URIs). */
export function fetchSource(base: string, urls?: Record<string, string>): ArtifactSource {
  const root = base.replace(/\/+$/, "");
  return {
    where: root,
    async read(name: string): Promise<Uint8Array | null> {
      const url = urls ? urls[name] : `${root}/${name}`;
      if (url === undefined) return null;
      let response: Response;
      try {
        response = await fetch(url);
      } catch (error) {
        throw new ArtifactError(`cannot fetch ${url}: ${(error as Error).message}`);
      }
      if (response.status === 404) return null;
      if (!response.ok) throw new ArtifactError(`cannot fetch ${url}: HTTP ${response.status}`);
      return new Uint8Array(await response.arrayBuffer());
    },
  };
}
