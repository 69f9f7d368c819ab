// codemode harness: loaded once into the startup snapshot, then driven per run by
// `__codemode_run(config, code)`. It seals the global scope, caps binary buffers,
// captures the console, builds the `codemode` proxy, runs the user's program and
// returns one JSON envelope describing the outcome. Everything the program may
// reach on the host goes through three bridges bound per runtime by Python:
//   __cm_async(name, argsJson) -> Promise<envelopeJson>   (default host calls)
//   __cm_sync(name, argsJson)  -> envelopeJson             (inline host calls)
//   __cm_log(level, text)      -> boolean (false: stop sending, the log is full)
"use strict";

(() => {
  const G = globalThis;
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

  // Strict JSON writer: BigInt kept exact, cycles, functions and symbols refused
  // with the path that holds them, size and depth bounded while writing.
  function toJson(value, where, limits) {
    const parts = [];
    let size = 0;
    const seen = new Set();
    const push = (text) => {
      size += text.length;
      if (size > limits.maxBytes) {
        throw new SerializeError(
          `${where} is too large to send: more than ${limits.maxBytes} bytes of JSON`,
        );
      }
      parts.push(text);
    };
    const write = (v, path, depth, inArray) => {
      if (v === null) return push("null");
      switch (typeof v) {
        case "undefined":
          return push("null");
        case "boolean":
          return push(v ? "true" : "false");
        case "number":
          return push(Number.isFinite(v) ? StringFn(v) : "null");
        case "bigint":
          return push(v.toString());
        case "string":
          return push(JSONstringify(v));
        case "function":
        case "symbol":
          throw new SerializeError(`cannot send ${path}: it is ${describeKind(v)}`);
      }
      if (depth > limits.maxDepth) {
        throw new SerializeError(`cannot send ${path}: nested deeper than ${limits.maxDepth} levels`);
      }
      if (seen.has(v)) throw new SerializeError(`cannot send ${path}: it is a cycle`);
      if (typeof v.then === "function") {
        throw new SerializeError(`cannot send ${path}: it is a Promise (did you forget await?)`);
      }
      seen.add(v);
      if (typeof v.toJSON === "function" && !(v instanceof Map) && !(v instanceof Set)) {
        const replaced = v.toJSON();
        seen.delete(v);
        return write(replaced, path, depth, inArray);
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
        for (const k of ObjectKeys(v)) {
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
      seen.delete(v);
    };
    write(value, where, 0, false);
    return parts.join("");
  }

  // Lenient, readable rendering for console output (never throws).
  function inspect(value, depth, seen) {
    if (value === null) return "null";
    switch (typeof value) {
      case "undefined":
        return "undefined";
      case "string":
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

  // Binary buffers live outside V8's heap cap: count every byte they take.
  function capBuffers() {
    let used = 0;
    let maxBytes = 0;
    const charge = (bytes) => {
      const n = Number(bytes) || 0;
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
    };
    const wrap = (Original, bytesFor) => {
      const wrapped = new GlobalProxy(Original, {
        construct(target, args, newTarget) {
          charge(bytesFor(args));
          return ReflectConstruct(target, args, newTarget === wrapped ? target : newTarget);
        },
        apply(target, self, args) {
          return ReflectApply(target, self, args);
        },
        get(target, key, receiver) {
          if (key === Symbol.species) return wrapped;
          return Reflect.get(target, key, target);
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
    wrap(ArrayBuffer, (args) => args[0]);
    const typed = [
      Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array,
      Uint32Array, Float32Array, Float64Array, BigInt64Array, BigUint64Array,
    ];
    if (typeof Float16Array === "function") typed.push(Float16Array);
    for (const T of typed) {
      wrap(T, (args) => {
        const first = args[0];
        if (typeof first === "number") return first * T.BYTES_PER_ELEMENT;
        if (first && typeof first === "object" && !(first instanceof ArrayBuffer)) {
          const length = first.length ?? first.size ?? 0;
          return (Number(length) || 0) * T.BYTES_PER_ELEMENT;
        }
        return 0;
      });
    }
    for (const name of ["from", "of"]) {
      const TypedArray = Object.getPrototypeOf(Int8Array);
      const original = TypedArray[name];
      Object.defineProperty(TypedArray, name, {
        value: function (...args) {
          const source = args[0];
          const length = name === "of" ? args.length : (source && (source.length ?? source.size)) || 0;
          charge(length * (this.BYTES_PER_ELEMENT || 8));
          return ReflectApply(original, this, args);
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
          charge(name === "slice" ? this.byteLength : Number(args[0] ?? this.byteLength));
          return ReflectApply(original, this, args);
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

  function describeError(err, kind) {
    if (err instanceof GlobalError || (err && typeof err === "object" && "message" in err)) {
      const stack = cleanStack(err);
      const at = firstUserLine(stack);
      return {
        kind,
        name: StringFn(err.name || "Error"),
        message: StringFn(err.message),
        stack,
        line: at ? at.line : null,
        column: at ? at.column : null,
        tool: typeof err.tool === "string" ? err.tool : null,
        pythonType: typeof err.pythonType === "string" ? err.pythonType : null,
      };
    }
    return {
      kind,
      name: "ThrownValue",
      message: `the program threw a non-Error value: ${inspect(err, 1, [])}`,
      stack: null,
      line: null,
      column: null,
      tool: null,
      pythonType: null,
    };
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
    const inline = new Set(config.inline);
    const argLimits = { maxBytes: config.maxArgBytes, maxDepth: config.maxDepth };
    const listing = tools.length ? tools.join(", ") : "(none)";

    const decode = (name, envelope) => {
      const reply = JSONparse(envelope);
      if ("ok" in reply) return reply.ok;
      if ("stop" in reply) halt();
      const e = reply.err;
      throw new ToolError(e.message, name, e.type || null);
    };
    // The common call, one object of strings, numbers, booleans and nulls, takes V8's native
    // JSON writer; anything else goes through the strict writer (BigInt, Map, errors, limits).
    const flat = (args) => {
      if (args.length !== 1) return args.length === 0;
      const obj = args[0];
      if (obj === null || typeof obj !== "object" || Object.getPrototypeOf(obj) !== ObjectProto) {
        return false;
      }
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
      if (finished) return new Promise(() => {});
      let payload;
      try {
        payload = flat(args) ? JSONstringify(args) : toJson(args, "arguments", argLimits);
      } catch (err) {
        return Promise.reject(new TypeError(`codemode.${name}(): ${err.message}`));
      }
      if (inline.has(name)) {
        try {
          return PromiseResolve(decode(name, bridges.sync(name, payload)));
        } catch (err) {
          return Promise.reject(err);
        }
      }
      return bridges.async(name, payload).then((envelope) => decode(name, envelope));
    };
    const unknown = (path) => {
      const fail = () => {
        throw new TypeError(
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
          if (Object.prototype.hasOwnProperty.call(target, key)) return target[key];
          if (config.openTargets) return dynamic(key);
          return unknown(`${prefix}${key}`);
        },
        has(target, key) {
          return Object.prototype.hasOwnProperty.call(target, key);
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
      if (dropped <= 1000 || dropped % 1000 === 0) logBridge("dropped", StringFn(dropped));
    };
    const emit = (level, text) => {
      if (finished) return;
      if (!open) {
        drop();
        return;
      }
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

  // Runs when the runtime is prepared, before any program is known: everything
  // that does not depend on the run, kept off the run's critical path.
  let bridges = null;
  let droppedLogs = () => 0;
  let setBufferLimit = () => {};
  let memoryUsage = () => null;
  function prepare() {
    bridges = { async: G.__cm_async, sync: G.__cm_sync, done: G.__cm_done };
    const logBridge = G.__cm_log;
    try {
      const op = G.__bootstrap.core.ops.op_memory_usage;
      memoryUsage = () => op().heapUsed;
    } catch (err) {
      // no statistics: the run still works
    }
    for (const name of [
      "__cm_async", "__cm_sync", "__cm_log", "__cm_park", "__cm_done", "__bootstrap",
      "__jsrun_bind_object",
      "__codemode_prepare", "__codemode_warm", "WebAssembly", "SharedArrayBuffer",
    ]) {
      hideGlobal(name);
    }
    setBufferLimit = capBuffers();
    droppedLogs = installConsole(logBridge);
    return true;
  }

  // A prepared runtime parks inside this call, its thread blocked in the host (an idle jsrun
  // runtime otherwise keeps a core busy polling), until a run hands it a job.
  // The job is kept for `__codemode_run_job()`, a second evaluation that carries the run's
  // time limit (jsrun enforces it from its own watchdog thread, which never needs the GIL).
  let parkedJob = "";
  function serve() {
    const park = G.__cm_park;
    prepare();
    parkedJob = park();
    return parkedJob ? "parked" : "quit";
  }

  function runJob() {
    hideGlobal("__codemode_run_job");
    const { config, code } = JSONparse(parkedJob);
    parkedJob = "";
    return run(config, code);
  }

  async function run(config, code) {
    const outcome = await runProgram(config, code);
    // From here on nothing calls the host again (stray timers and callbacks included): the
    // isolate can then be closed without its thread ever waiting for Python.
    finished = true;
    // Hand the outcome over at once: the evaluation itself may take a little longer to return.
    bridges.done(outcome);
    return outcome;
  }

  async function runProgram(config, code) {
    hideGlobal("__codemode_run");
    hideGlobal("__codemode_serve");
    if (bridges === null) prepare();
    sourceName = config.filename;
    setBufferLimit(config.maxBufferBytes);
    const codemode = buildCodemode(config, bridges);
    Object.defineProperty(G, "codemode", {
      value: codemode,
      writable: false,
      configurable: false,
      enumerable: false,
    });
    const started = DateNow();
    let outcome;
    try {
      let compiled;
      try {
        compiled = compile(code);
      } catch (err) {
        const error = describeError(err, "syntax");
        if (error.message === "Single function literal required") {
          // V8's words for a body that closes more blocks than it opens.
          error.message = "Unexpected token '}': the program closes a block it never opened";
          error.stack = `${error.name}: ${error.message}`;
        }
        return JSONstringify({ error, dropped: droppedLogs() });
      }
      let value = await compiled.fn();
      if (compiled.isExpression && typeof value === "function") value = await value();
      let result;
      try {
        result =
          value === undefined
            ? "null"
            : toJson(value, "result", { maxBytes: config.maxResultBytes, maxDepth: config.maxDepth });
      } catch (err) {
        return JSONstringify({ error: describeError(err, "result"), dropped: droppedLogs() });
      }
      const heap = memoryUsage();
      outcome =
        `{"result":${result},"dropped":${droppedLogs()},"ms":${DateNow() - started},` +
        `"heap":${heap === null ? "null" : heap}}`;
    } catch (err) {
      outcome = JSONstringify({
        error: describeError(err, "error"),
        dropped: droppedLogs(),
        heap: memoryUsage(),
      });
    }
    return outcome;
  }

  // Exercise the harness once while the snapshot is built, so its functions are
  // compiled there rather than on every run's critical path. Touches no globals.
  function warm() {
    const limits = { maxBytes: 1 << 20, maxDepth: 50 };
    const sample = { a: [1, 2n, "x", null, undefined, true], b: new Map([["k", new Set([1])]]) };
    toJson(sample, "result", limits);
    inspect(sample, 0, []);
    formatArgs(["text", sample, new Error("e")]);
    describeError(new Error("e"), "error");
    describeError(42, "error");
    const saved = sourceName;
    try {
      compile("() => 1");
      compile("return 1");
    } finally {
      sourceName = saved;
    }
    const config = {
      tools: ["a", "ns.b"],
      inline: ["a"],
      openTargets: false,
      maxArgBytes: 1024,
      maxDepth: 10,
    };
    const fake = { async: () => Promise.resolve('{"ok":1}'), sync: () => '{"ok":1}' };
    const cm = buildCodemode(config, fake);
    ObjectKeys(cm);
    cm.a({ x: 1 });
    cm.ns.b({ y: [1] });
    return true;
  }

  for (const [name, value] of [
    ["__codemode_prepare", prepare],
    ["__codemode_run", run],
    ["__codemode_serve", serve],
    ["__codemode_run_job", runJob],
    ["__codemode_warm", warm],
  ]) {
    Object.defineProperty(G, name, {
      value,
      writable: false,
      configurable: true,
      enumerable: false,
    });
  }
})();
