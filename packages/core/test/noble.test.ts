import { nobleProvider } from '../src/index.ts';
import { providerSuite } from './provider-suite.ts';

providerSuite(nobleProvider);
