// Drives a live QwenNats ingress with the official openai npm client and checks that every field it honours
// comes back as asked. Run by tests/QwenNats.Tests/Integration/NodeClientTests.cs:
//   QWEN_BASE_URL=http://127.0.0.1:8080 node check.mjs
// Prints one JSON line per check ({"name","ok","error"?}) and exits 1 when any check failed.
import OpenAI from 'openai';
import assert from 'node:assert/strict';

const base = process.env.QWEN_BASE_URL;
if (!base) {
  console.error('check.mjs: set QWEN_BASE_URL to the ingress, e.g. http://127.0.0.1:8080');
  process.exit(2);
}
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: process.env.QWEN_API_KEY ?? 'no-key-needed', maxRetries: 0, timeout: 60_000 });
const model = 'stories260K';
const user = (content) => [{ role: 'user', content }];
const prompt = 'Once upon a time';
// A token of the test model's vocabulary that is a piece of text (ids 3 to 258 are single bytes).
const biasedToken = '300';

let failed = 0;
async function check(name, fn) {
  try {
    await fn();
    console.log(JSON.stringify({ name, ok: true }));
  } catch (e) {
    failed++;
    console.log(JSON.stringify({ name, ok: false, error: String(e?.stack ?? e) }));
  }
}

/** Expects the call to fail with the client's typed 400 error naming the parameter. */
async function refused(call, param, code) {
  try {
    await call();
  } catch (e) {
    assert.ok(e instanceof OpenAI.BadRequestError, `expected BadRequestError, got ${e?.constructor?.name}: ${e}`);
    assert.equal(e.status, 400);
    assert.equal(e.param, param);
    if (code) assert.equal(e.code, code);
    assert.equal(e.type, 'invalid_request_error');
    return;
  }
  assert.fail(`expected a 400 naming ${param}`);
}

const greedy = (extra = {}) => client.chat.completions.create({ model, messages: user(prompt), max_tokens: 32, temperature: 0, ...extra });

await check('chat_plain', async () => {
  const c = await greedy({ max_tokens: 16 });
  assert.equal(c.object, 'chat.completion');
  assert.equal(c.choices.length, 1);
  assert.equal(c.choices[0].message.role, 'assistant');
  assert.ok(c.choices[0].message.content.length > 0);
  assert.ok(['stop', 'length'].includes(c.choices[0].finish_reason));
  assert.ok(c.usage.completion_tokens > 0 && c.usage.completion_tokens <= 16);
  assert.equal(c.usage.total_tokens, c.usage.prompt_tokens + c.usage.completion_tokens);
});

await check('chat_stream', async () => {
  const plain = (await greedy()).choices[0].message.content;
  const stream = await greedy({ stream: true });
  let text = '', role = null, finish = null, chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    assert.equal(chunk.object, 'chat.completion.chunk');
    assert.equal(chunk.usage, undefined, 'no usage without stream_options.include_usage');
    const choice = chunk.choices[0];
    role ??= choice.delta.role ?? null;
    text += choice.delta.content ?? '';
    finish = choice.finish_reason ?? finish;
  }
  assert.ok(chunks > 2);
  assert.equal(role, 'assistant');
  assert.equal(text, plain);
  assert.ok(['stop', 'length'].includes(finish));
});

await check('chat_stream_include_usage', async () => {
  const stream = await greedy({ stream: true, stream_options: { include_usage: true } });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  const last = chunks.at(-1);
  assert.deepEqual(last.choices, []);
  assert.ok(last.usage.completion_tokens > 0);
  assert.equal(last.usage.total_tokens, last.usage.prompt_tokens + last.usage.completion_tokens);
  for (const c of chunks.slice(0, -1)) assert.equal(c.usage, null);
  const text = chunks.slice(0, -1).map(c => c.choices[0].delta.content ?? '').join('');
  assert.ok(text.length > 0);
});

await check('chat_json_object', async () => {
  const c = await client.chat.completions.create({
    model, messages: user('Answer in JSON: a story about a cat.'), max_tokens: 400, temperature: 0.8, seed: 5,
    response_format: { type: 'json_object' },
  });
  assert.equal(c.choices[0].finish_reason, 'stop');
  const value = JSON.parse(c.choices[0].message.content);
  assert.equal(typeof value, 'object');
  assert.ok(value !== null && !Array.isArray(value));
});

await check('chat_json_schema', async () => {
  const schema = {
    type: 'object',
    properties: {
      name: { type: 'string', minLength: 1, maxLength: 12 },
      age: { type: 'integer' },
      tags: { type: 'array', items: { type: 'string', maxLength: 5 }, maxItems: 3 },
      mood: { enum: ['happy', 'sad'] },
    },
    required: ['name', 'age', 'tags', 'mood'],
    additionalProperties: false,
  };
  for (const seed of [1, 2, 3]) {
    const c = await client.chat.completions.create({
      model, messages: user('Describe a person in JSON.'), max_tokens: 400, temperature: 0.9, seed,
      response_format: { type: 'json_schema', json_schema: { name: 'person', strict: true, schema } },
    });
    assert.equal(c.choices[0].finish_reason, 'stop');
    const p = JSON.parse(c.choices[0].message.content);
    assert.deepEqual(Object.keys(p), ['name', 'age', 'tags', 'mood']);
    assert.equal(typeof p.name, 'string');
    assert.ok(p.name.length >= 1 && p.name.length <= 12);
    assert.ok(Number.isInteger(p.age));
    assert.ok(Array.isArray(p.tags) && p.tags.length <= 3);
    for (const t of p.tags) assert.ok(typeof t === 'string' && t.length <= 5);
    assert.ok(['happy', 'sad'].includes(p.mood));
  }
});

await check('chat_logprobs', async () => {
  const c = await greedy({ max_tokens: 12, logprobs: true, top_logprobs: 3 });
  const entries = c.choices[0].logprobs.content;
  assert.equal(entries.length, c.usage.completion_tokens);
  const bytes = [];
  for (const e of entries) {
    assert.ok(e.logprob <= 0);
    assert.equal(e.top_logprobs.length, 3);
    const tops = e.top_logprobs.map(t => t.logprob);
    assert.deepEqual(tops, [...tops].sort((a, b) => b - a));
    assert.equal(e.token, e.top_logprobs[0].token, 'greedy picks the most likely token');
    bytes.push(...e.bytes);
  }
  assert.equal(Buffer.from(bytes).toString('utf8'), c.choices[0].message.content);
});

await check('chat_penalties', async () => {
  const plain = (await greedy({ max_tokens: 48 })).choices[0].message.content;
  const penalised = (await greedy({ max_tokens: 48, frequency_penalty: 2, presence_penalty: 2 })).choices[0].message.content;
  assert.ok(penalised.length > 0);
  assert.notEqual(penalised, plain);
});

await check('chat_logit_bias', async () => {
  const c = await greedy({ max_tokens: 6, logit_bias: { [biasedToken]: 100 }, logprobs: true });
  const tokens = c.choices[0].logprobs.content.map(e => e.token);
  assert.equal(tokens.length, 6);
  assert.equal(new Set(tokens).size, 1, `every token is the biased one: ${JSON.stringify(tokens)}`);
  assert.equal(c.choices[0].message.content, tokens.join(''));
});

await check('chat_seed', async () => {
  const ask = (seed) => client.chat.completions.create({ model, messages: user(prompt), max_tokens: 24, temperature: 1, seed });
  const a = (await ask(12345)).choices[0].message.content;
  const b = (await ask(12345)).choices[0].message.content;
  assert.equal(a, b, 'the same seed gives the same answer');
});

await check('chat_stop', async () => {
  const text = (await greedy()).choices[0].message.content;
  const words = [...text.matchAll(/[A-Za-z]{3,}/g)].filter(m => m.index > 0);
  assert.ok(words.length > 0, `no word to stop at in ${JSON.stringify(text)}`);
  const stop = words[0][0];
  const c = await greedy({ stop: [stop] });
  assert.equal(c.choices[0].finish_reason, 'stop');
  assert.equal(c.choices[0].message.content, text.slice(0, text.indexOf(stop)));
});

await check('chat_max_tokens', async () => {
  const a = await greedy({ max_tokens: 3 });
  assert.equal(a.usage.completion_tokens, 3);
  assert.equal(a.choices[0].finish_reason, 'length');
  const b = await greedy({ max_tokens: undefined, max_completion_tokens: 4 });
  assert.equal(b.usage.completion_tokens, 4);
  assert.equal(b.choices[0].finish_reason, 'length');
});

await check('chat_errors', async () => {
  await refused(() => greedy({ n: 2 }), 'n', 'unsupported_parameter');
  await refused(() => greedy({ tools: [{ type: 'function', function: { name: 'f', parameters: {} } }] }), 'tools', 'unsupported_parameter');
  await refused(() => greedy({ temperature: 3 }), 'temperature', 'invalid_request');
  await refused(() => client.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi', name: 'ann' }] }), 'messages[0].name', 'unsupported_parameter');
  await refused(() => client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: '{}' } }] }, { role: 'user', content: 'and?' }],
  }), 'messages[1].tool_calls', 'unsupported_parameter');
  await refused(() => client.chat.completions.create({
    model, messages: [{ role: 'user', content: [{ type: 'text', text: 'look' }, { type: 'image_url', image_url: { url: 'https://example.com/a.png' } }] }],
  }), 'messages[0].content[1].type', 'unsupported_parameter');
});

// ---- Legacy completions ------------------------------------------------------------------------------------
const complete = (extra = {}) => client.completions.create({ model, prompt, max_tokens: 16, temperature: 0, ...extra });

await check('completion_plain', async () => {
  const c = await complete();
  assert.equal(c.object, 'text_completion');
  assert.equal(c.choices.length, 1);
  assert.equal(c.choices[0].index, 0);
  assert.ok(c.choices[0].text.length > 0);
  assert.equal(c.choices[0].logprobs, null);
  assert.ok(['stop', 'length'].includes(c.choices[0].finish_reason));
  assert.ok(c.usage.completion_tokens > 0 && c.usage.completion_tokens <= 16);
  assert.equal(c.usage.total_tokens, c.usage.prompt_tokens + c.usage.completion_tokens);
});

await check('completion_stream_include_usage', async () => {
  const plain = (await complete()).choices[0].text;
  const stream = await complete({ stream: true, stream_options: { include_usage: true } });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  for (const c of chunks) assert.equal(c.object, 'text_completion');
  const last = chunks.at(-1);
  assert.deepEqual(last.choices, []);
  assert.equal(last.usage.total_tokens, last.usage.prompt_tokens + last.usage.completion_tokens);
  const body = chunks.slice(0, -1);
  for (const c of body) assert.equal(c.usage, null);
  assert.equal(body.map(c => c.choices[0].text).join(''), plain);
  assert.ok(['stop', 'length'].includes(body.at(-1).choices[0].finish_reason));
});

await check('completion_logprobs', async () => {
  const c = await complete({ logprobs: 2 });
  const lp = c.choices[0].logprobs;
  assert.equal(lp.tokens.length, c.usage.completion_tokens);
  assert.equal(lp.token_logprobs.length, lp.tokens.length);
  assert.equal(lp.top_logprobs.length, lp.tokens.length);
  assert.equal(lp.text_offset.length, lp.tokens.length);
  let offset = 0;
  lp.tokens.forEach((t, i) => {
    assert.equal(lp.text_offset[i], offset);
    offset += t.length;
    assert.ok(lp.token_logprobs[i] <= 0);
    const alternatives = Object.entries(lp.top_logprobs[i]);
    assert.ok(alternatives.length >= 1 && alternatives.length <= 2);
    assert.ok(Math.abs(Math.max(...alternatives.map(([, v]) => v)) - lp.token_logprobs[i]) < 1e-6, 'greedy picks the most likely token');
  });
  assert.equal(lp.tokens.join(''), c.choices[0].text);
});

await check('completion_echo', async () => {
  const plain = (await complete()).choices[0].text;
  const c = await complete({ echo: true });
  assert.equal(c.choices[0].text, prompt + plain);
});

await check('completion_sampling', async () => {
  const text = (await complete({ max_tokens: 32 })).choices[0].text;
  const words = [...text.matchAll(/[A-Za-z]{3,}/g)].filter(m => m.index > 0);
  assert.ok(words.length > 0, `no word to stop at in ${JSON.stringify(text)}`);
  const stopped = await complete({ max_tokens: 32, stop: words[0][0] });
  assert.equal(stopped.choices[0].finish_reason, 'stop');
  assert.equal(stopped.choices[0].text, text.slice(0, text.indexOf(words[0][0])));

  const seeded = (seed) => complete({ temperature: 1, top_p: 0.9, seed });
  assert.equal((await seeded(7)).choices[0].text, (await seeded(7)).choices[0].text);

  const biased = await complete({ max_tokens: 5, logit_bias: { [biasedToken]: 100 }, logprobs: 0 });
  assert.equal(new Set(biased.choices[0].logprobs.tokens).size, 1);
  assert.equal(biased.choices[0].logprobs.tokens.length, 5);

  const penalised = (await complete({ max_tokens: 32, frequency_penalty: 2, presence_penalty: 2 })).choices[0].text;
  assert.notEqual(penalised, text);

  const short = await complete({ max_tokens: 2 });
  assert.equal(short.usage.completion_tokens, 2);
  assert.equal(short.choices[0].finish_reason, 'length');
});

await check('completion_errors', async () => {
  await refused(() => complete({ prompt: ['one', 'two'] }), 'prompt', 'unsupported_parameter');
  await refused(() => complete({ prompt: [1, 2, 3] }), 'prompt', 'unsupported_parameter');
  await refused(() => complete({ n: 2 }), 'n', 'unsupported_parameter');
  await refused(() => complete({ best_of: 3 }), 'best_of', 'unsupported_parameter');
  await refused(() => complete({ suffix: 'The end.' }), 'suffix', 'unsupported_parameter');
  await refused(() => complete({ logprobs: 6 }), 'logprobs', 'invalid_request');
  await refused(() => complete({ echo: true, logprobs: 1 }), 'echo', 'unsupported_parameter');
});

process.exit(failed === 0 ? 0 : 1);
