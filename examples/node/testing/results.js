// Values the tests record for tests/test_node_client.py, which compares them with torch. Each is
// printed (one `gradserve-value NAME JSON` line) and, when GRADSERVE_RESULTS names a directory,
// written with the rest of its test file's values to <that directory>/<file>.json: node --test
// runs each test file in a process of its own.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { after } = require('node:test');

/** A `record(name, value)` function for the test file `filename` (its __filename). */
function recorder(filename) {
  const results = {};
  after(() => {
    const dir = process.env.GRADSERVE_RESULTS;
    if (dir) fs.writeFileSync(path.join(dir, `${path.basename(filename, '.js')}.json`), JSON.stringify(results));
  });
  return (name, v) => {
    results[name] = v;
    console.log(`gradserve-value ${name} ${JSON.stringify(v)}`);
  };
}

module.exports = { recorder };
