// A reference xDS interop client on gRPC Node (@grpc/grpc-js + @grpc/grpc-js-xds),
// for meshlib's suite.
//
// It speaks gRPC's xDS interop protocol (LoadBalancerStatsService and
// XdsUpdateClientConfigureService on --stats_port) with the flags of gRPC's own
// xds_interop_client, and sends through grpc-js-xds's xds:/// resolver, so that
// the harness can compare meshlib with grpc-js on the same configuration.
//
// Run by the harness as:
//
//   NODE_PATH=interop/.peers/node/node_modules GRPC_XDS_BOOTSTRAP=bootstrap.json \
//     node interop/reference/node/xds_interop_client.js --server xds:///name --stats_port 0 --qps 400
//
// The protos are loaded at run time from interop/proto. With --stats_port 0 it
// picks a free port; it prints "stats on HOST:PORT".
'use strict';

const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
require('@grpc/grpc-js-xds').register();

const PROTO_ROOT = path.join(__dirname, '..', '..', 'proto');
const definition = protoLoader.loadSync('grpc/testing/test.proto', {
  includeDirs: [PROTO_ROOT],
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
});
const testing = grpc.loadPackageDefinition(definition).grpc.testing;

const METHODS = ['EmptyCall', 'UnaryCall'];
const ENUM_NAMES = { EmptyCall: 'EMPTY_CALL', UnaryCall: 'UNARY_CALL' };
const BY_RPC_TYPE = { EMPTY_CALL: 'EmptyCall', UNARY_CALL: 'UnaryCall' };

function parseArgs(argv) {
  const args = {
    server: 'localhost:8080',
    stats_port: 8081,
    qps: 1,
    num_channels: 1,
    rpc: 'UnaryCall',
    metadata: '',
    rpc_timeout_sec: 20,
    fail_on_failed_rpc: false,
    print_response: false,
    address: '0.0.0.0',
  };
  for (let i = 0; i < argv.length; i++) {
    const match = /^--?([a-z_]+)(?:=(.*))?$/.exec(argv[i]);
    if (!match || !(match[1] in args)) {
      throw new Error(`unknown flag ${argv[i]}`);
    }
    const name = match[1];
    let value = match[2];
    if (typeof args[name] === 'boolean') {
      args[name] = value === undefined ? true : ['1', 'true', 'yes'].includes(value.toLowerCase());
      continue;
    }
    if (value === undefined) {
      value = argv[++i];
    }
    args[name] = typeof args[name] === 'number' ? Number(value) : value;
  }
  return args;
}

function parseMetadata(text) {
  const metadata = {};
  for (const entry of text.split(',').filter(Boolean)) {
    const [method, key, ...rest] = entry.split(':');
    if (rest.length === 0) {
      throw new Error(`--metadata: ${entry} is not METHOD:KEY:VALUE`);
    }
    (metadata[method] = metadata[method] || []).push([key.trim().toLowerCase(), rest.join(':')]);
  }
  return metadata;
}

class Stats {
  constructor() {
    this.nextId = 0;
    this.windows = new Set();
    this.started = {};
    this.results = {};
  }

  start(method) {
    this.started[method] = (this.started[method] || 0) + 1;
    return this.nextId++;
  }

  finish(id, method, code, peer) {
    const results = (this.results[method] = this.results[method] || {});
    results[code] = (results[code] || 0) + 1;
    for (const window of this.windows) {
      if (id < window.start || id >= window.end) continue;
      if (peer) {
        window.byPeer[peer] = (window.byPeer[peer] || 0) + 1;
        const byMethod = (window.byMethod[method] = window.byMethod[method] || {});
        byMethod[peer] = (byMethod[peer] || 0) + 1;
      } else {
        window.failed++;
      }
      if (--window.remaining <= 0) window.done();
    }
  }

  window(numRpcs, timeoutSec, reply) {
    const window = {
      start: this.nextId,
      end: this.nextId + numRpcs,
      byPeer: {},
      byMethod: {},
      failed: 0,
      remaining: numRpcs,
    };
    let timer = null;
    window.done = () => {
      if (!this.windows.delete(window)) return;
      clearTimeout(timer);
      const rpcsByMethod = {};
      for (const [method, peers] of Object.entries(window.byMethod)) {
        rpcsByMethod[method] = { rpcs_by_peer: peers };
      }
      reply(null, {
        rpcs_by_peer: window.byPeer,
        num_failures: window.failed + Math.max(window.remaining, 0),
        rpcs_by_method: rpcsByMethod,
      });
    };
    this.windows.add(window);
    if (numRpcs <= 0) {
      window.done();
      return;
    }
    timer = setTimeout(window.done, timeoutSec * 1000);
  }

  accumulated() {
    const response = {
      num_rpcs_started_by_method: {},
      num_rpcs_succeeded_by_method: {},
      num_rpcs_failed_by_method: {},
      stats_per_method: {},
    };
    for (const method of METHODS) {
      const name = ENUM_NAMES[method];
      const results = this.results[method] || {};
      const total = Object.values(results).reduce((a, b) => a + b, 0);
      const ok = results[0] || 0;
      response.num_rpcs_started_by_method[name] = this.started[method] || 0;
      response.num_rpcs_succeeded_by_method[name] = ok;
      response.num_rpcs_failed_by_method[name] = total - ok;
      response.stats_per_method[name] = { rpcs_started: this.started[method] || 0, result: results };
    }
    return response;
  }
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  const stats = new Stats();
  let config = {
    methods: args.rpc.split(',').filter(Boolean),
    metadata: parseMetadata(args.metadata),
    timeoutSec: args.rpc_timeout_sec,
  };
  let succeededOnce = false;
  const clients = [];
  const timers = [];

  const server = new grpc.Server();
  server.addService(testing.LoadBalancerStatsService.service, {
    GetClientStats: (call, reply) => stats.window(call.request.num_rpcs, call.request.timeout_sec, reply),
    GetClientAccumulatedStats: (call, reply) => reply(null, stats.accumulated()),
  });
  server.addService(testing.XdsUpdateClientConfigureService.service, {
    Configure: (call, reply) => {
      const metadata = {};
      for (const entry of call.request.metadata) {
        const method = BY_RPC_TYPE[entry.type];
        (metadata[method] = metadata[method] || []).push([entry.key.toLowerCase(), entry.value]);
      }
      config = {
        methods: call.request.types.map((t) => BY_RPC_TYPE[t]),
        metadata,
        timeoutSec: call.request.timeout_sec || args.rpc_timeout_sec,
      };
      reply(null, {});
    },
  });

  function stop(code) {
    for (const timer of timers) clearTimeout(timer.handle);
    for (const client of clients) client.close();
    server.forceShutdown();
    process.exit(code);
  }
  process.on('SIGTERM', () => stop(0));
  process.on('SIGINT', () => stop(0));

  function sendOne(client, method) {
    const id = stats.start(method);
    const metadata = new grpc.Metadata();
    for (const [key, value] of config.metadata[method] || []) metadata.add(key, value);
    const deadline = new Date(Date.now() + config.timeoutSec * 1000);
    let peer = '';
    const call = client[method]({}, metadata, { deadline }, (error, response) => {
      if (error) {
        stats.finish(id, method, error.code, '');
        if (args.print_response) console.log(`${method}: failed: ${error.code} ${error.details}`);
        if (args.fail_on_failed_rpc && succeededOnce) {
          console.error(`${method} failed after an RPC had succeeded: ${error.code} ${error.details}`);
          stop(1);
        }
        return;
      }
      succeededOnce = true;
      if (!peer && response && response.hostname) peer = response.hostname;
      stats.finish(id, method, 0, peer);
      if (args.print_response) console.log(`${method}: answered by ${peer}`);
    });
    call.on('metadata', (received) => {
      const hostname = received.get('hostname');
      if (hostname.length > 0) peer = String(hostname[0]);
    });
  }

  const bindAddress = `${args.address}:${args.stats_port}`;
  server.bindAsync(bindAddress, grpc.ServerCredentials.createInsecure(), (error, port) => {
    if (error) {
      console.error(`--stats_port: cannot listen on ${bindAddress}: ${error.message}`);
      process.exit(1);
    }
    console.log(`xds_interop_client.js: stats on ${args.address}:${port}`);
    const period = 1000 / args.qps;
    for (let i = 0; i < Math.max(args.num_channels, 1); i++) {
      // Each client has a channel of its own.
      const client = new testing.TestService(args.server, grpc.credentials.createInsecure(), {
        'grpc.use_local_subchannel_pool': 1,
      });
      clients.push(client);
      const timer = { next: Date.now() };
      timers.push(timer);
      const tick = () => {
        for (const method of config.methods) sendOne(client, method);
        timer.next += period;
        timer.handle = setTimeout(tick, Math.max(0, timer.next - Date.now()));
      };
      tick();
    }
  });
}

main();
