'use strict';
// s3rver in N processes that share one listening port (node's cluster module), for the e2e
// benchmark. One s3rver is one event loop: with two workers on a 2-core machine their PUTs
// queue behind each other's steps in it, which S3 itself, a service of many machines, never
// does. Each process serves the same data directory; node's primary process hands the
// connections to them in turn and prints the line the test harness waits for once all listen.
//
//   node s3rver-cluster.js -d DIR [-a ADDRESS] [--processes N] [--configure-bucket NAME]...
//
// Buckets are created by the primary process before any child starts (no two processes
// creating one). SIGTERM stops the children and then the primary; a child also exits when the
// primary dies (its IPC channel closes).

const cluster = require('cluster');
const path = require('path');
const S3rver = require(path.join(__dirname, '..', '..', 'deploy', 's3rver', 'node_modules',
                                 's3rver'));

function options(argv) {
  const opts = {directory: null, address: '127.0.0.1', processes: 2, buckets: []};
  for (let i = 0; i < argv.length; i += 2) {
    const value = argv[i + 1];
    if (value === undefined) {
      throw new Error('missing value after ' + argv[i]);
    }
    switch (argv[i]) {
      case '-d': opts.directory = value; break;
      case '-a': opts.address = value; break;
      case '--processes': opts.processes = Number(value); break;
      case '--configure-bucket': opts.buckets.push(value); break;
      default: throw new Error('unknown option ' + argv[i]);
    }
  }
  if (!opts.directory || !(opts.processes >= 1)) {
    throw new Error('usage: s3rver-cluster.js -d DIR [-a ADDRESS] [--processes N] ' +
                    '[--configure-bucket NAME]...');
  }
  return opts;
}

async function primary(opts) {
  const setup = new S3rver({
    directory: opts.directory, silent: true,
    configureBuckets: opts.buckets.map(name => ({name, configs: []})),
  });
  await setup.configureBuckets();
  let listening = 0;
  cluster.on('listening', (worker, address) => {
    listening += 1;
    if (listening === opts.processes) {
      console.log('S3rver listening on %s:%d (%d processes)', opts.address, address.port,
                  opts.processes);
    }
  });
  let stopping = false;
  let exited = 0; // counted: a worker may still be in cluster.workers at its 'exit' event
  cluster.on('exit', (worker, code, signal) => {
    exited += 1;
    if (!stopping) {
      console.error('s3rver process %d exited (%s)', worker.process.pid, signal || code);
      process.exit(1);
    }
    if (exited === opts.processes) {
      process.exit(0);
    }
  });
  process.on('SIGTERM', () => {
    stopping = true;
    for (const worker of Object.values(cluster.workers)) {
      worker.process.kill('SIGTERM');
    }
  });
  for (let i = 0; i < opts.processes; i++) {
    cluster.fork();
  }
}

const opts = options(process.argv.slice(2));
if (cluster.isPrimary) {
  primary(opts).catch(err => {
    console.error(err);
    process.exit(1);
  });
} else {
  // port 0 in every child: the cluster gives them all the one port the first one got
  new S3rver({directory: opts.directory, address: opts.address, port: 0}).run()
      .catch(err => {
        console.error(err);
        process.exit(1);
      });
}
