// A session of a real JavaScript FHIR client, fhir-kit-client (npm),
// against a running Passerelle: create, read, vread, update, conditional
// update, JSON Patch, search with paging, history, batch and delete.
//
// Usage: node javascript_client.mjs BASE_URL API_KEY OUT_DIR
// (FHIR_KIT_CLIENT names the package's dist/index.js: an ES module is not
// found through NODE_PATH.)
//
// Every resource and Bundle the gateway answers is written to OUT_DIR for
// the independent R4 validator. Any error exits non-zero with the reason.

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

const [base, key, out] = process.argv.slice(2);
const { Client } = await import(process.env.FHIR_KIT_CLIENT);
const client = new Client({ baseUrl: base, bearerToken: key });
const system = 'urn:passerelle:clients';
let kept = 0;

function keep(name, resource) {
  kept += 1;
  writeFileSync(join(out, `${String(kept).padStart(3, '0')}-${name}.json`), JSON.stringify(resource));
}

function check(condition, message) {
  if (!condition) {
    console.error(`FAILED: ${message}`);
    process.exit(1);
  }
}

try {
  const created = await client.create({
    resourceType: 'Patient',
    body: {
      resourceType: 'Patient',
      identifier: [{ system, value: 'KIT-1' }],
      name: [{ family: 'Kit', given: ['Lou'] }],
    },
  });
  check(created.id, `create: ${JSON.stringify(created)}`);
  keep('created', created);
  const id = created.id;

  const read = await client.read({ resourceType: 'Patient', id });
  check(read.name[0].family === 'Kit', `read: ${JSON.stringify(read)}`);

  const updated = await client.update({
    resourceType: 'Patient',
    id,
    body: { ...read, birthDate: '1990-04-05' },
  });
  check(updated.meta.versionId === '2', `update: ${JSON.stringify(updated)}`);
  keep('updated', updated);

  const patched = await client.patch({
    resourceType: 'Patient',
    id,
    jsonPatch: [{ op: 'add', path: '/gender', value: 'other' }],
  });
  check(patched.gender === 'other' && patched.birthDate === '1990-04-05', `patch: ${JSON.stringify(patched)}`);
  keep('patched', patched);

  const first = await client.vread({ resourceType: 'Patient', id, version: '1' });
  check(first.birthDate === undefined, `vread 1: ${JSON.stringify(first)}`);

  await client.update({
    resourceType: 'Patient',
    searchParams: { identifier: `${system}|KIT-2` },
    body: { resourceType: 'Patient', identifier: [{ system, value: 'KIT-2' }], name: [{ family: 'Kit' }] },
  });

  const batch = await client.batch({
    body: {
      resourceType: 'Bundle',
      type: 'batch',
      entry: [1, 2, 3].map((n) => ({
        resource: { resourceType: 'Patient', identifier: [{ system, value: `KIT-B${n}` }], name: [{ family: 'Kit' }] },
        request: { method: 'POST', url: 'Patient' },
      })),
    },
  });
  check(batch.type === 'batch-response' && batch.entry.length === 3, `batch: ${JSON.stringify(batch)}`);
  keep('batch', batch);

  // Five patients named Kit (KIT-1, KIT-2, three from the batch), two a page.
  let page = await client.search({ resourceType: 'Patient', searchParams: { family: 'Kit', _count: 2 } });
  keep('search', page);
  let seen = page.entry.length;
  while (client.nextPage({ bundle: page })) {
    page = await client.nextPage({ bundle: page });
    seen += (page.entry || []).length;
  }
  check(seen === 5, `paging saw ${seen} of 5`);

  const history = await client.resourceHistory({ resourceType: 'Patient', id });
  check(history.type === 'history' && history.total === 3, `history: ${JSON.stringify(history)}`);
  keep('history', history);
  const typeHistory = await client.typeHistory({ resourceType: 'Patient' });
  check(typeHistory.type === 'history' && typeHistory.total >= 6, `type history: ${JSON.stringify(typeHistory)}`);
  keep('type-history', typeHistory);

  await client.delete({ resourceType: 'Patient', id });
  let gone = false;
  try {
    await client.read({ resourceType: 'Patient', id });
  } catch (error) {
    gone = error.response && error.response.status === 410;
  }
  check(gone, 'a deleted patient must read as 410');
  console.log(`javascript client: every step passed, ${kept} answers kept`);
} catch (error) {
  const detail = error.response ? `${error.response.status} ${JSON.stringify(error.response.data)}` : error.stack;
  console.error(`FAILED: ${detail}`);
  process.exit(1);
}
