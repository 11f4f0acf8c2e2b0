// Both supported Express majors, for describe.each: express 5 is installed as `express`, 4 as `express4`.
import express5 from 'express';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const express4 = require('express4') as typeof express5;

export const expressVersions: Array<[string, typeof express5]> = [
  ['Express 5', express5],
  ['Express 4', express4],
];
