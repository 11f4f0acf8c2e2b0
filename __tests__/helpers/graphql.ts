// A GraphQL schema with one subscription, `tick`, that yields TICKS numbers TICK_MS apart and ends:
// what the GraphQL-over-SSE producers serve in the guard() suites.
import { GraphQLInt, GraphQLObjectType, GraphQLSchema, GraphQLString } from 'graphql';
import { sleep } from './server';

export const TICKS = 5;
export const TICK_MS = 200; // the subscription ends after about a second

export const schema = new GraphQLSchema({
  query: new GraphQLObjectType({ name: 'Query', fields: { hello: { type: GraphQLString, resolve: () => 'world' } } }),
  subscription: new GraphQLObjectType({
    name: 'Subscription',
    fields: {
      tick: {
        type: GraphQLInt,
        subscribe: async function* () {
          for (let n = 1; n <= TICKS; n++) {
            await sleep(TICK_MS);
            yield { tick: n };
          }
        },
      },
    },
  }),
});
