// Ends a jest run with one plain line, "N passed, N failed, N skipped", that any CI log reader can
// count, preceded by one line per suite skipped for a missing binary: its reason and install command.
// The reason is the title of a skipped test that describeWithBinary (__tests__/helpers/binaries.ts) adds.
const SKIP_TITLE = /^skipped because (.+)$/;

/** "<suite>: <reason>" for every suite skipped by describeWithBinary, in file order, once each. */
function skippedSuites(results) {
  const lines = [];
  for (const file of results.testResults) {
    for (const test of file.testResults) {
      const match = test.status === 'pending' ? SKIP_TITLE.exec(test.title) : null;
      if (match === null) continue;
      const suite = test.ancestorTitles.join(' › ');
      lines.push(`jest: skipped "${suite}": ${match[1]}`);
    }
  }
  return [...new Set(lines)];
}

class SummaryReporter {
  onRunComplete(_contexts, results) {
    for (const line of skippedSuites(results)) process.stdout.write(`${line}\n`);
    const skipped = results.numPendingTests + results.numTodoTests;
    process.stdout.write(`jest: ${results.numPassedTests} passed, ${results.numFailedTests} failed, ${skipped} skipped\n`);
  }
}
module.exports = SummaryReporter;
