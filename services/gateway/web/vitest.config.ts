import { defineConfig } from 'vitest/config';

// Unit tests run in Node; a test file that needs a DOM says so with a
// "@vitest-environment happy-dom" comment. The browser tests of the whole
// console are in services/testum/console_test.go.
export default defineConfig({
  test: {
    include: ['src/**/*.test.ts'],
    environment: 'node',
  },
});
