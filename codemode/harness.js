// codemode harness: loaded once into the startup snapshot, then driven per run by
// `__codemode_run(config, code)`. It seals the global scope, caps binary buffers,
// captures the console, builds the `codemode` proxy, runs the user's program and
// returns one JSON envelope describing the outcome. Everything the program may
// reach on the host goes through a handful of bridge operations (plus
// parking and the outcome for the harness itself), all through one sync function bound per
// runtime by Python, `__cm_host(op, a, b)`; see bindBridges() for how it is sealed away:
//   call(name, argsJson)  -> envelopeJson        (inline host calls, answered at once)
//   start(name, argsJson) -> id, or -1 to stop   (default host calls, run on the host) ...
//   wait(ms)              -> [[id, envelope]...] (... whose answers a pump blocks for)
//   log(level, text)      -> 1 kept, 0 the log is full, -1 stop
//   done(outcomeJson), park() -> the next job, peek() -> the job if one is handed over
//                                             already (else null: then it rehearses, parks)
"use strict";

(() => {
  const G = globalThis;
  // jsrun's timers exist only in a live runtime, not while the snapshot is built: taken in
  // prepare(), before any program can replace them.
  let setTimeoutFn;
  const AsyncFunction = (async () => {}).constructor;
  const indirectEval = G.eval;
  const JSONstringify = JSON.stringify;
  const JSONparse = JSON.parse;
  const ObjectKeys = Object.keys;
  const ObjectFreeze = Object.freeze;
  const ObjectCreate = Object.create;
  const ObjectProto = Object.prototype;
  const NumberIsFinite = Number.isFinite;
  const ArrayIsArray = Array.isArray;
  const StringFn = String;
  const DateNow = Date.now;
  const isView = ArrayBuffer.isView;
  const GlobalError = Error;
  const GlobalProxy = Proxy;
  const ReflectApply = Reflect.apply;
  const ReflectConstruct = Reflect.construct;
  const PromiseResolve = Promise.resolve.bind(Promise);
  const PromiseReject = Promise.reject.bind(Promise);
  const PromiseCtor = Promise;
  const PromiseThen = Promise.prototype.then;
  const TypeErrorCtor = TypeError;
  const ObjectHasOwn = Object.hasOwn;
  const ObjectGetPrototypeOf = Object.getPrototypeOf;
  const ArrayProto = Array.prototype;
  const SetCtor = Set;
  const SetHas = Set.prototype.has;
  const SetAdd = Set.prototype.add;
  const SetDelete = Set.prototype.delete;
  const ReflectOwnKeys = Reflect.ownKeys;
  const RegExpExec = RegExp.prototype.exec;
  const EMPTY_PATTERN = /(?:)/;
  const FunctionProto = Function.prototype;
  const FunctionToString = Function.prototype.toString;
  const ArrayIncludes = (array, item) => ReflectApply(Array.prototype.includes, array, [item]);
  const StringStartsWith = (text, prefix) =>
    ReflectApply(String.prototype.startsWith, text, [prefix]);

  // ---------------------------------------------------------------- values

  class SerializeError extends Error {
    constructor(message) {
      super(message);
      this.name = "TypeError";
    }
  }

  function describeKind(value) {
    if (typeof value === "function") return `a function (${value.name || "anonymous"})`;
    if (typeof value === "symbol") return `a symbol (${StringFn(value.description)})`;
    return typeof value;
  }

  function keyPath(path, key) {
    return /^[A-Za-z_$][\w$]*$/.test(key) ? `${path}.${key}` : `${path}[${JSONstringify(key)}]`;
  }

  // A `toJSON` the program put on Object.prototype or Array.prototype is pollution, not a
  // value's own conversion: it would let a program change what every other value sends.
  function ownToJSON(v) {
    const toJSON = v.toJSON;
    if (typeof toJSON !== "function") return null;
    let owner = v;
    for (let hops = 0; owner !== null && hops < 1000; hops++) {
      if (ObjectHasOwn(owner, "toJSON")) break;
      owner = ObjectGetPrototypeOf(owner);
    }
    return owner === ObjectProto || owner === ArrayProto ? null : toJSON;
  }

  // Strict JSON writer: BigInt kept exact, cycles, functions and symbols refused
  // with the path that holds them, size and depth bounded while writing. It builds one string
  // and calls no method a program could replace, so the text is always well-formed JSON.
  function toJson(value, where, limits) {
    let out = "";
    const seen = new SetCtor();
    const tooLarge = () =>
      new SerializeError(`${where} is too large to send: more than ${limits.maxBytes} bytes of JSON`);
    const push = (text) => {
      if (out.length + text.length > limits.maxBytes) throw tooLarge();
      out += text;
    };
    const write = (v, path, depth, inArray) => {
      if (v === null) return push("null");
      switch (typeof v) {
        case "undefined":
          return push("null");
        case "boolean":
          return push(v ? "true" : "false");
        case "number":
          return push(NumberIsFinite(v) ? StringFn(v) : "null");
        case "bigint":
          return push(StringFn(v));
        case "string":
          // Checked before the string is touched: writing it flattens it, and flattening a
          // huge string built by `repeat` or `+` at once can exceed the heap in one allocation.
          if (out.length + v.length + 2 > limits.maxBytes) throw tooLarge();
          return push(JSONstringify(v));
        case "function":
        case "symbol":
          throw new SerializeError(`cannot send ${path}: it is ${describeKind(v)}`);
      }
      if (depth > limits.maxDepth) {
        throw new SerializeError(`cannot send ${path}: nested deeper than ${limits.maxDepth} levels`);
      }
      if (ReflectApply(SetHas, seen, [v])) {
        throw new SerializeError(`cannot send ${path}: it is a cycle`);
      }
      if (typeof v.then === "function") {
        throw new SerializeError(`cannot send ${path}: it is a Promise (did you forget await?)`);
      }
      ReflectApply(SetAdd, seen, [v]);
      const toJSON = v instanceof Map || v instanceof Set ? null : ownToJSON(v);
      if (toJSON !== null) {
        const replaced = ReflectApply(toJSON, v, []);
        ReflectApply(SetDelete, seen, [v]);
        return write(replaced, path, depth + 1, inArray);
      }
      if (ArrayIsArray(v) || isView(v)) {
        push("[");
        for (let i = 0; i < v.length; i++) {
          if (i) push(",");
          write(v[i], `${path}[${i}]`, depth + 1, true);
        }
        push("]");
      } else if (v instanceof Set) {
        write([...v], path, depth, inArray);
      } else if (v instanceof Map) {
        const obj = ObjectCreate(null);
        for (const [k, val] of v) obj[StringFn(k)] = val;
        write(obj, path, depth, inArray);
      } else if (v instanceof GlobalError) {
        write({ name: v.name, message: v.message, stack: v.stack }, path, depth, inArray);
      } else {
        push("{");
        let first = true;
        const keys = ObjectKeys(v);
        for (let i = 0; i < keys.length; i++) {
          const k = keys[i];
          const item = v[k];
          if (item === undefined) continue;
          if (!first) push(",");
          first = false;
          push(JSONstringify(k));
          push(":");
          write(item, keyPath(path, k), depth + 1, false);
        }
        push("}");
      }
      ReflectApply(SetDelete, seen, [v]);
    };
    write(value, where, 0, false);
    return out;
  }

  // Lenient, readable rendering for console output (never throws, always a string).
  function inspect(value, depth, seen) {
    try {
      return safeText(inspectValue(value, depth, seen), "[Uninspectable]");
    } catch (err) {
      return "[Uninspectable]";
    }
  }

  function inspectValue(value, depth, seen) {
    if (value === null) return "null";
    switch (typeof value) {
      case "undefined":
        return "undefined";
      case "string":
        if (value.length > MAX_MESSAGE) return `[a string of ${value.length} characters]`;
        return depth === 0 ? value : JSONstringify(value);
      case "number":
      case "boolean":
        return StringFn(value);
      case "bigint":
        return `${value}n`;
      case "symbol":
        return value.toString();
      case "function":
        return `[Function ${value.name || "(anonymous)"}]`;
    }
    if (value instanceof GlobalError) {
      const stack = depth === 0 ? cleanStack(value) : null;
      return stack || `${value.name}: ${value.message}`;
    }
    if (seen.includes(value)) return "[Circular]";
    if (depth > 4) return ArrayIsArray(value) ? "[Array]" : "[Object]";
    const next = seen.concat([value]);
    try {
      if (typeof value.then === "function") return "Promise { <pending> }";
      if (value instanceof Date) return value.toISOString();
      if (value instanceof RegExp) return StringFn(value);
      if (value instanceof Map) {
        const items = [...value].slice(0, 100).map(
          ([k, v]) => `${inspect(k, depth + 1, next)} => ${inspect(v, depth + 1, next)}`,
        );
        return `Map(${value.size}) {${items.length ? ` ${items.join(", ")} ` : ""}}`;
      }
      if (value instanceof Set) {
        const items = [...value].slice(0, 100).map((v) => inspect(v, depth + 1, next));
        return `Set(${value.size}) {${items.length ? ` ${items.join(", ")} ` : ""}}`;
      }
      if (ArrayIsArray(value) || isView(value)) {
        const shown = Array.prototype.slice.call(value, 0, 100);
        const items = shown.map((v) => inspect(v, depth + 1, next));
        if (value.length > 100) items.push(`... ${value.length - 100} more items`);
        return `[${items.join(", ")}]`;
      }
      const keys = ObjectKeys(value);
      const items = keys.slice(0, 100).map((k) => {
        const label = /^[A-Za-z_$][\w$]*$/.test(k) ? k : JSONstringify(k);
        return `${label}: ${inspect(value[k], depth + 1, next)}`;
      });
      if (keys.length > 100) items.push(`... ${keys.length - 100} more keys`);
      return items.length ? `{ ${items.join(", ")} }` : "{}";
    } catch (err) {
      return "[Uninspectable]";
    }
  }

  function formatArgs(args) {
    let text = "";
    for (let i = 0; i < args.length; i++) {
      if (i) text += " ";
      text += inspect(args[i], 0, []);
    }
    return text;
  }

  // ---------------------------------------------------------------- sealing

  // Binary buffers live outside V8's heap cap: count every byte they take. Every size is read
  // once, through functions captured here (a program may replace `Number`, give a length a
  // getter or a `valueOf` that answers differently the second time, or fake `instanceof`), and
  // the value that was charged is the one handed to the real constructor.
  function capBuffers() {
    const NumberFn = Number;
    const ArrayFrom = Array.from;
    const ArrayCtor = Array;
    const ReflectGet = Reflect.get;
    const species = Symbol.species;
    const iteratorKey = Symbol.iterator;
    const TypedArray = ObjectGetPrototypeOf(Int8Array);
    const TypedProto = TypedArray.prototype;
    const getter = (proto, name) => Object.getOwnPropertyDescriptor(proto, name).get;
    const typedLength = getter(TypedProto, "length");
    const typedByteLength = getter(TypedProto, "byteLength");
    const typedSet = TypedProto.set;
    const bufferByteLength = getter(ArrayBuffer.prototype, "byteLength");
    const lengthOf = (value) => {
      try {
        return ReflectApply(typedLength, value, []);
      } catch (err) {
        return -1; // not a typed array
      }
    };
    const isBuffer = (value) => {
      try {
        ReflectApply(bufferByteLength, value, []);
        return true;
      } catch (err) {
        return false;
      }
    };
    // A primitive a constructor converts exactly as it would have converted the original.
    const primitive = (value) =>
      (typeof value === "object" && value !== null) || typeof value === "function"
        ? NumberFn(value)
        : value;
    const size = (value) => {
      if (typeof value === "bigint" || typeof value === "symbol") return 0;
      const n = NumberFn(value);
      return n > 0 ? n : 0;
    };
    let used = 0;
    let maxBytes = 0;
    const charge = (bytes) => {
      const n = size(bytes);
      if (n > 0) {
        used += n;
        if (used > maxBytes) {
          used -= n;
          throw new RangeError(
            `binary buffer limit reached: this run may allocate at most ${maxBytes} bytes ` +
              "of ArrayBuffer/TypedArray memory",
          );
        }
      }
      return n;
    };
    // Charge, then run `make`; a failed allocation gives its bytes back.
    const charged = (bytes, make) => {
      const n = charge(bytes);
      try {
        return make();
      } catch (err) {
        used -= n;
        throw err;
      }
    };
    const wrap = (Original, construct) => {
      const wrapped = new GlobalProxy(Original, {
        construct(target, args, newTarget) {
          return construct(target, args, newTarget === wrapped ? target : newTarget);
        },
        apply(target, self, args) {
          return ReflectApply(target, self, args);
        },
        get(target, key, receiver) {
          if (key === species) return wrapped;
          return ReflectGet(target, key, target);
        },
      });
      Object.defineProperty(Original.prototype, "constructor", {
        value: wrapped,
        writable: false,
        configurable: false,
      });
      Object.defineProperty(G, Original.name, {
        value: wrapped,
        writable: false,
        configurable: false,
        enumerable: false,
      });
      return wrapped;
    };
    wrap(ArrayBuffer, (target, args, newTarget) => {
      const length = primitive(args[0]);
      let options = args[1];
      if (options !== null && typeof options === "object") {
        const max = options.maxByteLength;
        options = max === undefined ? undefined : { maxByteLength: primitive(max) };
      }
      return charged(length, () => ReflectConstruct(target, [length, options], newTarget));
    });
    const typed = [
      Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array,
      Uint32Array, Float32Array, Float64Array, BigInt64Array, BigUint64Array,
    ];
    if (typeof Float16Array === "function") typed.push(Float16Array);
    for (const T of typed) {
      const each = T.BYTES_PER_ELEMENT;
      wrap(T, (target, args, newTarget) => {
        const first = args[0];
        if ((typeof first !== "object" || first === null) && typeof first !== "function") {
          // A length (or nothing).
          const length = first === undefined ? 0 : primitive(first);
          return charged(size(length) * each, () => ReflectConstruct(target, [length], newTarget));
        }
        if (isBuffer(first)) return ReflectConstruct(target, args, newTarget); // a view: no copy
        const sourceLength = lengthOf(first);
        if (sourceLength >= 0) {
          return charged(sourceLength * each, () => ReflectConstruct(target, [first], newTarget));
        }
        if (typeof first[iteratorKey] !== "function") {
          // An array-like: its length is read once, charged, then its elements copied.
          const length = primitive(first.length);
          return charged(size(length) * each, () => {
            const made = ReflectConstruct(target, [size(length)], newTarget);
            const n = ReflectApply(typedLength, made, []);
            for (let i = 0; i < n; i++) made[i] = first[i];
            return made;
          });
        }
        // An iterable: read into a plain array first (growing inside the heap limit), then
        // copied by index, whatever Array.prototype says.
        const items = ReflectApply(ArrayFrom, ArrayCtor, [first]);
        return charged(items.length * each, () => {
          const made = ReflectConstruct(target, [items.length], newTarget);
          ReflectApply(typedSet, made, [items]);
          return made;
        });
      });
    }
    // Methods that make a new typed array of the receiver's size without asking its
    // constructor (so the construct trap above never sees them).
    for (const name of ["toReversed", "toSorted", "with"]) {
      const original = TypedProto[name];
      if (typeof original !== "function") continue;
      Object.defineProperty(TypedProto, name, {
        value: function (...args) {
          const bytes = ReflectApply(typedByteLength, this, []);
          return charged(bytes, () => ReflectApply(original, this, args));
        },
        writable: false,
        configurable: false,
      });
    }
    const proto = ArrayBuffer.prototype;
    for (const name of ["resize", "transfer", "transferToFixedLength", "slice"]) {
      const original = proto[name];
      if (typeof original !== "function") continue;
      Object.defineProperty(proto, name, {
        value: function (...args) {
          const current = ReflectApply(bufferByteLength, this, []);
          if (name === "slice") return charged(current, () => ReflectApply(original, this, args));
          const length = args[0] === undefined ? current : primitive(args[0]);
          return charged(size(length) - current, () => ReflectApply(original, this, [length]));
        },
        writable: false,
        configurable: false,
      });
    }
    return (limit) => {
      maxBytes = limit;
    };
  }

  function hideGlobal(name) {
    try {
      delete G[name];
    } catch (err) {
      // non-configurable: leave it
    }
  }

  // ---------------------------------------------------------------- errors

  let sourceName = "codemode.js";
  let firstLineShift = 0;

  // Keep only frames from the user's program and map them to its own lines.
  function cleanStack(err) {
    const raw = err && typeof err.stack === "string" ? err.stack : "";
    if (!raw) return null;
    const lines = raw.split("\n");
    const head = [];
    const frames = [];
    let inFrames = false;
    for (const line of lines) {
      const m = /^\s+at /.test(line);
      if (!m && !inFrames) {
        head.push(line);
        continue;
      }
      inFrames = true;
      if (!m || line.indexOf(sourceName) === -1) continue;
      frames.push(
        line
          .replace(`${sourceName}, <anonymous>`, sourceName)
          .replace(/at (async )?(Object\.)?eval( \[as fn\])? \(/, "at $1<program> (")
          .replace(new RegExp(`${escapeRegExp(sourceName)}:(\\d+):(\\d+)`), (all, ln, col) => {
            const c = ln === "1" ? Math.max(1, Number(col) - firstLineShift) : Number(col);
            return `${sourceName}:${ln}:${c}`;
          }),
      );
    }
    return head.concat(frames).join("\n");
  }

  function escapeRegExp(text) {
    return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  }

  function firstUserLine(stack) {
    if (!stack) return null;
    const m = new RegExp(`${escapeRegExp(sourceName)}:(\\d+):(\\d+)`).exec(stack);
    return m ? { line: Number(m[1]), column: Number(m[2]) } : null;
  }

  // Text from a value the program made: its getters and `toString` may throw or lie.
  function safeText(value, fallback = "") {
    if (typeof value === "string") return value;
    try {
      const text = StringFn(value);
      return typeof text === "string" ? text : fallback;
    } catch (err) {
      return fallback;
    }
  }

  const UNREADABLE = {};
  // Longest string the harness copies into a console line or an error report. A longer one
  // is described, never read: reading flattens it, one allocation that may exceed the heap.
  const MAX_TEXT = 1 << 20;
  const MAX_MESSAGE = 1 << 16;

  function read(obj, key) {
    try {
      return obj[key];
    } catch (err) {
      return UNREADABLE;
    }
  }

  function readText(obj, key, fallback) {
    const value = read(obj, key);
    return value === UNREADABLE || value == null ? fallback : safeText(value, fallback);
  }

  function describeError(err, kind) {
    try {
      return describeValue(err, kind);
    } catch (failure) {
      return errorRecord(kind, "Error", "the program threw a value that could not be described");
    }
  }

  function errorRecord(kind, name, message) {
    return { kind, name, message, stack: null, line: null, column: null, tool: null,
      pythonType: null };
  }

  function describeValue(err, kind) {
    const isObject = err !== null && (typeof err === "object" || typeof err === "function");
    if (isObject && (err instanceof GlobalError || "message" in err)) {
      const message = read(err, "message");
      if (typeof message === "string" && message.length > MAX_MESSAGE) {
        // Its stack starts with the message: leave both unread.
        return errorRecord(
          kind,
          readText(err, "name", "Error") || "Error",
          `(an error message of ${message.length} characters, too long to report)`,
        );
      }
      let stack = null;
      try {
        stack = cleanStack(err);
      } catch (failure) {
        stack = null;
      }
      stack = typeof stack === "string" ? stack : null;
      const at = firstUserLine(stack);
      const tool = read(err, "tool");
      const pythonType = read(err, "pythonType");
      return {
        kind,
        name: readText(err, "name", "Error") || "Error",
        message: readText(err, "message", "(the error's message could not be read)"),
        stack,
        line: at ? at.line : null,
        column: at ? at.column : null,
        tool: typeof tool === "string" ? tool : null,
        pythonType: typeof pythonType === "string" ? pythonType : null,
      };
    }
    return errorRecord(
      kind,
      "ThrownValue",
      `the program threw a non-Error value: ${inspect(err, 1, [])}`,
    );
  }

  // Envelopes are written field by field from strings and numbers: JSON.stringify on an object
  // would call a `toJSON` a program put on Object.prototype and let it forge the outcome.
  const stringJson = (value) => (typeof value === "string" ? JSONstringify(value) : "null");
  const numberJson = (value) =>
    typeof value === "number" && NumberIsFinite(value) ? StringFn(value) : "null";

  function errorJson(e) {
    return (
      `{"kind":${stringJson(e.kind)},"name":${stringJson(e.name)},` +
      `"message":${stringJson(e.message)},"stack":${stringJson(e.stack)},` +
      `"line":${numberJson(e.line)},"column":${numberJson(e.column)},` +
      `"tool":${stringJson(e.tool)},"pythonType":${stringJson(e.pythonType)}}`
    );
  }

  function errorEnvelope(error, heap) {
    return `{"error":${errorJson(error)},"dropped":${numberJson(droppedLogs())},"heap":${numberJson(heap)}}`;
  }

  // ---------------------------------------------------------------- program

  // Accept a function expression, bare statements (top-level await/return) or
  // one expression. The user's first line shares line 1 with a short prefix, so
  // every line number in a stack trace is the user's own.
  function compile(code) {
    let isExpression = false;
    try {
      new AsyncFunction(`return (${code}\n)`);
      isExpression = true;
    } catch (err) {
      isExpression = false;
    }
    if (!isExpression) {
      // Parsed on its own first, so that an unbalanced `}` cannot close our wrapper early.
      new AsyncFunction(code);
    }
    const prefix = isExpression ? "(async () => (" : "(async () => {";
    const suffix = isExpression ? "\n))" : "\n})";
    firstLineShift = prefix.length;
    const body = `${prefix}${code}${suffix}\n//# sourceURL=${sourceName}`;
    return { fn: indirectEval(body), isExpression };
  }

  // The host answers STOP once a run is being stopped: from then on the program never calls
  // the host again (it spins here until V8 terminates it), which makes terminating it safe.
  const STOP = -1;
  // How long the pump blocks for answers before letting the program's own timers run.
  const PUMP_WAIT_MS = 20;
  let finished = false;
  function halt() {
    for (;;) {
      // stopped
    }
  }

  class ToolError extends Error {
    constructor(message, tool, pythonType) {
      super(message);
      this.name = "ToolError";
      this.tool = tool;
      this.pythonType = pythonType;
    }
  }

  function buildCodemode(config, bridges) {
    const tools = config.tools;
    const inline = ObjectCreate(null);
    for (const name of config.inline) inline[name] = true;
    const argLimits = { maxBytes: config.maxArgBytes, maxDepth: config.maxDepth };
    const listing = tools.length ? tools.join(", ") : "(none)";

    const decode = (name, envelope) => decodeReply(name, JSONparse(envelope));
    const decodeReply = (name, reply) => {
      if (ObjectHasOwn(reply, "ok")) return reply.ok;
      if (ObjectHasOwn(reply, "stop")) halt();
      const e = reply.err;
      throw new ToolError(StringFn(e.message), name, typeof e.type === "string" ? e.type : null);
    };
    // The common call, one object of strings, numbers, booleans and nulls, takes V8's native
    // JSON writer; anything else goes through the strict writer (BigInt, Map, errors, limits).
    // Not when a program has put a `toJSON` on Object.prototype or Array.prototype: the native
    // writer would call it.
    const flat = (args) => {
      if ("toJSON" in args) return false;
      if (args.length !== 1) return args.length === 0;
      const obj = args[0];
      if (obj === null || typeof obj !== "object" || ObjectGetPrototypeOf(obj) !== ObjectProto) {
        return false;
      }
      if ("toJSON" in obj) return false;
      let n = 0;
      for (const k in obj) {
        const v = obj[k];
        const t = typeof v;
        const plain = t === "string" || t === "boolean" || (t === "number" && NumberIsFinite(v));
        if (v !== null && !plain) return false;
        if (t === "string" && v.length > 4096) return false;
        if (++n > 64) return false;
      }
      return true;
    };
    const call = (name, args) => {
      if (finished) return new PromiseCtor(() => {});
      let payload;
      try {
        payload = flat(args) ? JSONstringify(args) : toJson(args, "arguments", argLimits);
        if (typeof payload !== "string" || payload.length > argLimits.maxBytes) {
          // A getter that answered differently the second time.
          throw new SerializeError(
            `arguments are too large to send: more than ${argLimits.maxBytes} bytes of JSON`,
          );
        }
      } catch (err) {
        return PromiseReject(new TypeErrorCtor(`codemode.${name}(): ${safeText(err && err.message)}`));
      }
      if (inline[name] === true) {
        try {
          return PromiseResolve(decode(name, bridges.sync(name, payload)));
        } catch (err) {
          return PromiseReject(err);
        }
      }
      const id = bridges.start(name, payload);
      if (id === STOP) halt();
      const answered = new PromiseCtor((resolve) => {
        waiting[id] = resolve;
      });
      pending++;
      fresh++;
      schedulePump();
      // Decoded in a reaction the program awaits: a ToolError's stack then reaches its line.
      return ReflectApply(PromiseThen, answered, [(box) => decodeReply(name, box.reply)]);
    };

    // Default calls run on the host while the program goes on; their answers are collected by
    // a pump that blocks in `wait` (the isolate thread sleeps in the host, where a jsrun runtime
    // awaiting a host promise would poll a core). It runs as a microtask, after letting a few
    // more go by so that calls started together are awaited together; an empty wait (the
    // program may be waiting on its own timers too) reschedules it as a timer instead.
    const waiting = ObjectCreate(null);
    let pending = 0;
    let fresh = 0;
    let hops = 0;
    let pumpQueued = false;
    const schedulePump = () => {
      if (pumpQueued) return;
      pumpQueued = true;
      ReflectApply(PromiseThen, PromiseResolve(undefined), [pump]);
    };
    const pump = () => {
      pumpQueued = false;
      if (finished || pending === 0) return;
      if (fresh > 0 && hops < 3) {
        fresh = 0;
        hops++;
        schedulePump();
        return;
      }
      fresh = 0;
      hops = 0;
      const answer = bridges.wait(PUMP_WAIT_MS);
      const replies = JSONparse(answer);
      if (!ArrayIsArray(replies)) halt(); // {"stop": 1}
      for (let i = 0; i < replies.length; i++) {
        const id = replies[i][0];
        const resolve = waiting[id];
        if (resolve === undefined) continue;
        delete waiting[id];
        pending--;
        // Boxed without a prototype: resolving with a thenable would call a polluted `then`.
        const box = ObjectCreate(null);
        box.reply = replies[i][1];
        resolve(box);
      }
      if (pending === 0) return;
      if (replies.length > 0 || setTimeoutFn === undefined) {
        schedulePump();
      } else {
        pumpQueued = true;
        ReflectApply(setTimeoutFn, G, [pump, 0]);
      }
    };
    const unknown = (path) => {
      const fail = () => {
        throw new TypeErrorCtor(
          `codemode.${path} is not a function: no tool of that name. Available: ${listing}`,
        );
      };
      return fail;
    };

    // Tree of real tools; namespaces are plain null-prototype objects.
    const makeNode = (prefix) => {
      const members = ObjectCreate(null);
      const fns = ObjectCreate(null);
      for (const full of tools) {
        if (!full.startsWith(prefix)) continue;
        const rest = full.slice(prefix.length);
        const dot = rest.indexOf(".");
        if (dot === -1) {
          fns[rest] = full;
        } else {
          const ns = rest.slice(0, dot);
          if (!(ns in members)) members[ns] = null;
        }
      }
      for (const ns of ObjectKeys(members)) members[ns] = makeNode(`${prefix}${ns}.`);
      for (const short of ObjectKeys(fns)) {
        const full = fns[short];
        const fn = (...args) => call(full, args);
        Object.defineProperty(fn, "name", { value: full });
        members[short] = fn;
      }
      ObjectFreeze(members);
      const dynamic = (name) => {
        // Session mode: unknown names become host call requests handled by Python.
        const path = `${prefix}${name}`;
        const fn = (...args) => call(path, args);
        return new GlobalProxy(fn, {
          get(target, key) {
            if (typeof key !== "string" || key === "then") return undefined;
            return dynamic(`${name}.${key}`);
          },
        });
      };
      return new GlobalProxy(members, {
        get(target, key) {
          if (typeof key !== "string") return undefined;
          if (key === "then" || key === "toJSON") return undefined;
          if (ObjectHasOwn(target, key)) return target[key];
          if (config.openTargets) return dynamic(key);
          return unknown(`${prefix}${key}`);
        },
        has(target, key) {
          return ObjectHasOwn(target, key);
        },
        set() {
          return false;
        },
        defineProperty() {
          return false;
        },
        deleteProperty() {
          return false;
        },
        getPrototypeOf() {
          return null;
        },
        setPrototypeOf() {
          return false;
        },
      });
    };
    return makeNode("");
  }

  function installConsole(logBridge) {
    let open = true;
    let dropped = 0;
    const counts = ObjectCreate(null);
    const timers = ObjectCreate(null);
    // Once the host says the log is full, lines are only counted. The count is reported as it
    // grows (each drop up to 1,000, then every 1,000th) so it survives a run that never ends.
    const drop = () => {
      dropped++;
      if (dropped <= 1000 || dropped % 1000 === 0) {
        if (logBridge("dropped", StringFn(dropped)) === STOP) halt();
      }
    };
    const emit = (level, text) => {
      if (finished) return;
      if (!open) {
        drop();
        return;
      }
      if (text.length > MAX_TEXT) text = `[a console line of ${text.length} characters was left out]`;
      const answer = logBridge(level, text);
      if (answer === STOP) halt();
      if (answer !== 1) {
        open = false;
        drop();
      }
    };
    const method = (level) => (...args) => emit(level, formatArgs(args));
    const console = {
      log: method("log"),
      info: method("info"),
      warn: method("warn"),
      error: method("error"),
      debug: method("debug"),
      trace: method("debug"),
      dir: (value) => emit("log", inspect(value, 0, [])),
      table: (value) => emit("log", inspect(value, 0, [])),
      assert: (cond, ...args) => {
        if (!cond) emit("error", `Assertion failed${args.length ? `: ${formatArgs(args)}` : ""}`);
      },
      count: (label = "default") => {
        counts[label] = (counts[label] || 0) + 1;
        emit("log", `${label}: ${counts[label]}`);
      },
      time: (label = "default") => {
        timers[label] = DateNow();
      },
      timeEnd: (label = "default") => {
        if (label in timers) emit("log", `${label}: ${DateNow() - timers[label]}ms`);
        delete timers[label];
      },
      group: method("log"),
      groupEnd: () => {},
    };
    Object.defineProperty(G, "console", {
      value: ObjectFreeze(console),
      writable: false,
      configurable: false,
      enumerable: false,
    });
    return () => dropped;
  }

  // jsrun reaches Python through two native ops, and leaves JavaScript wrappers for them on
  // globalThis (`__host_op_sync__`, `__jsrunCallAsync`, ...) that take a numeric op id. Each
  // bound `__cm_*` global is `(...args) => __host_op_sync__(ID, ...args)`, looking its wrapper
  // up at call time. So the harness reads every bridge's op id from its source, calls the
  // native ops directly from its own closure, then deletes every `__*` global: no program can
  // call a bridge by id (forge an outcome through `done`, hang in `park`). The wrappers are
  // never called either: they are sloppy-mode functions whose lookups (`args.map`) a program
  // could hook to get hold of them through a stack trace.
  const BRIDGE_SOURCE = /^\(\.\.\.args\) => __host_op_(sync|async)__\((\d+), \.\.\.args\)/;

  function bindBridges() {
    const ops = G.__bootstrap.core.ops;
    const opSync = ops.op_jsrun_call_python_sync;
    const opAsync = ops.op_jsrun_call_python_async;
    if (typeof opSync !== "function" || typeof opAsync !== "function") {
      throw new GlobalError("codemode harness: jsrun's host call ops are missing");
    }
    // deno_core's async op stub calls its native op as `originalOp.call(...)`: a replaced
    // `Function.prototype.call` would be handed that native op. Pin the real one.
    Object.defineProperty(FunctionProto, "call", { writable: false, configurable: false });
    // `await` hands a promise whose `constructor` is not the real Promise to its `then`: with
    // both replaced, a program would run inside the harness's own awaits and choose the run's
    // outcome. Pin the real one.
    Object.defineProperty(PromiseCtor.prototype, "constructor", {
      writable: false,
      configurable: false,
    });
    const bridge = (name, mode) => {
      const fn = G[name];
      const match =
        typeof fn === "function" ? BRIDGE_SOURCE.exec(ReflectApply(FunctionToString, fn, [])) : null;
      if (match === null || match[1] !== mode) {
        throw new GlobalError(`codemode harness: cannot bind the ${name} bridge`);
      }
      const id = Number(match[2]);
      return mode === "sync" ? (...args) => opSync(id, args) : (...args) => opAsync(id, args);
    };
    const host = bridge("__cm_host", "sync");
    const bound = {
      sync: (name, payload) => host("call", name, payload),
      start: (name, payload) => host("start", name, payload),
      wait: (ms) => host("wait", ms, ""),
      log: (level, text) => host("log", level, text),
      done: (outcome) => host("done", outcome, ""),
      park: () => host("park", "", ""),
      peek: () => host("peek", "", ""),
    };
    try {
      const memory = ops.op_memory_usage;
      memoryUsage = () => {
        const used = memory().heapUsed;
        return typeof used === "number" ? used : null;
      };
    } catch (err) {
      // no statistics: the run still works
    }
    return bound;
  }

  // Delete every global jsrun or the harness added (all start with `__`, the harness's entry
  // points excepted while Python still needs them), and whatever names jsrun's internals.
  let sealed = null; // what the last seal kept, and how many global names were left
  function sealGlobals(keep) {
    for (const name of ReflectOwnKeys(G)) {
      if (typeof name !== "string") continue;
      if (ArrayIncludes(keep, name)) continue;
      if (StringStartsWith(name, "__") || /jsrun|host_op/i.test(name)) hideGlobal(name);
    }
    for (const name of ["WebAssembly", "SharedArrayBuffer"]) hideGlobal(name);
    sealed = { keep, count: ReflectOwnKeys(G).length };
  }

  // Seal again as a run starts. When no global name has appeared since the runtime was sealed
  // while it was prepared (jsrun adds none per evaluation), hiding what that seal kept is
  // enough, and much cheaper than walking the global scope again.
  function resealGlobals() {
    if (sealed !== null && ReflectOwnKeys(G).length === sealed.count) {
      for (const name of sealed.keep) hideGlobal(name);
      sealed = null; // a later reseal walks the scope again
    } else {
      sealGlobals([]);
    }
  }

  // Runs when the runtime is prepared, before any program is known: everything
  // that does not depend on the run, kept off the run's critical path.
  let bridges = null;
  let droppedLogs = () => 0;
  let setBufferLimit = () => {};
  let memoryUsage = () => null;
  function prepare(keep) {
    setTimeoutFn = typeof G.setTimeout === "function" ? G.setTimeout : undefined;
    bridges = bindBridges();
    sealGlobals(keep);
    setBufferLimit = capBuffers();
    droppedLogs = installConsole(bridges.log);
    return true;
  }

  // A prepared runtime parks inside this call, its thread blocked in the host (an idle jsrun
  // runtime otherwise keeps a core busy polling), until a run hands it a job. A run that took
  // it before it got that far has handed its job over already: it skips the rehearsal.
  // The job is kept for `__codemode_run_job()`, a second evaluation that carries the run's
  // time limit (jsrun enforces it from its own watchdog thread, which never needs the GIL).
  let parkedJob = "";
  function serve() {
    prepare(["__codemode_run_job"]);
    const early = bridges.peek();
    if (early !== null && early !== undefined) {
      parkedJob = early;
      return parkedJob ? "taken" : "quit";
    }
    rehearse();
    parkedJob = bridges.park();
    return parkedJob ? "parked" : "quit";
  }

  function runJob() {
    const { config, code } = JSONparse(parkedJob);
    parkedJob = "";
    return run(config, code);
  }

  // `config === null` only ever comes from rehearse(): return before doing anything.
  async function run(config, code) {
    if (config === null) return null;
    let outcome;
    try {
      outcome = await runProgram(config, code);
    } catch (err) {
      outcome = errorEnvelope(errorRecord("internal", "InternalError", "the harness failed"), null);
    }
    // From here on nothing calls the host again (stray timers and callbacks included): the
    // isolate can then be closed without its thread ever waiting for Python.
    finished = true;
    // Hand the outcome over at once: the evaluation itself may take a little longer to return.
    bridges.done(outcome);
    return outcome;
  }

  async function runProgram(config, code) {
    if (config === null) return null;
    if (bridges === null) prepare([]);
    resealGlobals();
    sourceName = config.filename;
    setBufferLimit(config.maxBufferBytes);
    const codemode = buildCodemode(config, bridges);
    Object.defineProperty(G, "codemode", {
      value: codemode,
      writable: false,
      configurable: false,
      enumerable: false,
    });
    // RegExp's legacy statics (`RegExp.input`, `lastMatch`, `$1`...) hold the harness's last
    // match, such as a bridge wrapper's source: leave them empty.
    ReflectApply(RegExpExec, EMPTY_PATTERN, [""]);
    // Awaited, not returned: returning a promise from an async function resolves through its
    // `then`, which the program may have replaced.
    return await evaluate(code, config);
  }

  // Compile and run the program; its outcome as an envelope.
  async function evaluate(code, config) {
    if (config === null) return null;
    const started = DateNow();
    let compiled;
    try {
      compiled = compile(code);
    } catch (err) {
      return syntaxEnvelope(err);
    }
    try {
      let value = await compiled.fn();
      if (compiled.isExpression && typeof value === "function") value = await value();
      return resultEnvelope(value, config, started);
    } catch (err) {
      return errorEnvelope(describeError(err, "error"), memoryUsage());
    }
  }

  function syntaxEnvelope(err) {
    const error = describeError(err, "syntax");
    if (error.message === "Single function literal required") {
      // V8's words for a body that closes more blocks than it opens.
      error.message = "Unexpected token '}': the program closes a block it never opened";
      error.stack = `${error.name}: ${error.message}`;
    }
    return errorEnvelope(error, null);
  }

  function resultEnvelope(value, config, started) {
    let result;
    try {
      result =
        value === undefined
          ? "null"
          : toJson(value, "result", { maxBytes: config.maxResultBytes, maxDepth: config.maxDepth });
    } catch (err) {
      return errorEnvelope(describeError(err, "result"), null);
    }
    return (
      `{"result":${result},"dropped":${numberJson(droppedLogs())},` +
      `"ms":${numberJson(DateNow() - started)},"heap":${numberJson(memoryUsage())}}`
    );
  }

  // Walk a run's path once without running anything a program could notice. V8 compiles a
  // function on its first call in each isolate, and a startup snapshot keeps only part of
  // what was compiled while it was built: left to the run, that costs about half a
  // millisecond. Called while the snapshot is built and again in each prepared runtime before
  // it parks, both off any run's path.
  function rehearse() {
    const savedName = sourceName;
    const savedShift = firstLineShift;
    try {
      run(null, "");
      runProgram(null, "");
      evaluate("", null);
      try {
        JSONparse("");
      } catch (err) {
        syntaxEnvelope(err);
      }
      const limits = { maxBytes: 1 << 20, maxDepth: 50 };
      const sample = { a: [1, 2n, "x", null, undefined, true], b: new Map([["k", new Set([1])]]) };
      toJson(sample, "result", limits);
      inspect(sample, 0, []);
      formatArgs(["text", sample, new Error("e")]);
      describeError(new Error("e"), "error");
      describeError(42, "error");
      compile("() => 1");
      compile("return 1");
      resultEnvelope(1, { maxResultBytes: 64, maxDepth: 4 }, DateNow());
      errorEnvelope(describeError(new GlobalError("e"), "error"), memoryUsage());
      const config = {
        tools: ["a", "ns.b"],
        inline: ["a"],
        openTargets: false,
        maxArgBytes: 1024,
        maxDepth: 10,
      };
      // Only the inline call: a default one would leave its pump queued as a microtask.
      const cm = buildCodemode(config, { sync: () => '{"ok":1}' });
      ObjectKeys(cm);
      cm.a({ x: 1 });
    } finally {
      sourceName = savedName;
      firstLineShift = savedShift;
    }
    return true;
  }

  for (const [name, value] of [
    ["__codemode_run", run],
    ["__codemode_serve", serve],
    ["__codemode_run_job", runJob],
    ["__codemode_warm", rehearse],
  ]) {
    Object.defineProperty(G, name, {
      value,
      writable: false,
      configurable: true,
      enumerable: false,
    });
  }
})();
