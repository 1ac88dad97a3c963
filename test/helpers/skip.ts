/**
 * Decides whether an integration test that needs an external service runs. On a developer's machine a
 * missing service skips the test with one clear line; under CI (CI=true) a missing service is an error,
 * because `.ci/run` installs everything the tests need.
 */
export function serviceAvailable(service: string, available: boolean, hint: string): boolean {
  if (available) return true;
  if (process.env.CI === 'true') {
    throw new Error(`${service} is required under CI=true but was not found (${hint})`);
  }
  console.warn(`SKIP: ${service} not found (${hint}); its integration tests are skipped`);
  return false;
}
