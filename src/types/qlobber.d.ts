// qlobber ships no type declarations; this covers the part Portcullis uses.
declare module 'qlobber' {
  interface QlobberOptions {
    separator?: string;
    wildcard_one?: string;
    wildcard_some?: string;
    max_words?: number;
    max_wildcard_somes?: number;
  }

  export class QlobberDedup<Value> {
    constructor(options?: QlobberOptions);
    add(topic: string, value: Value): this;
    remove(topic: string, value?: Value): this;
    match(topic: string): Set<Value>;
    clear(): this;
  }
}
