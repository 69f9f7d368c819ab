// codemode-jupyter's JupyterLab 4 / Notebook 7 extension: highlight %%codemode cells as JavaScript.
//
// JupyterLab 4 highlights every line of an IPython cell as Python (its "ipython" language is the
// Python one; there is no map from cell magics to languages). This plugin wraps the registry's
// "ipython" language: when a cell's first line is `%%codemode ...`, the rest of the cell is
// parsed by the registry's own JavaScript parser as an overlay (lezer's parseMixed), so it gets
// JavaScript tokens (keywords, strings, comments, template literals) while the magic line stays
// as it was. Cells without the magic are untouched. Everything used here is shared with the
// application (singletons), so the bundle holds only this file.

import { IEditorLanguageRegistry } from "@jupyterlab/codemirror";
import { LanguageSupport } from "@codemirror/language";
import { parseMixed } from "@lezer/common";

/** Cell magics whose body is JavaScript. */
export const MAGICS = ["codemode"];

// Leading blank lines are allowed (IPython drops them); the magic line ends at the first newline.
const HEAD = new RegExp(`^(?:[ \\t]*\\n)*%%(?:${MAGICS.join("|")})(?:[ \\t][^\\n]*)?(?:\\n|$)`);
const HEAD_LIMIT = 4096;

/** Where the JavaScript body of a cell starts, or -1 when the cell is not a %%codemode cell. */
export function bodyStart(text) {
  const match = HEAD.exec(text);
  return match ? match[0].length : -1;
}

/** The IPython language with %%codemode bodies parsed as JavaScript. */
export function withJavaScriptMagics(python, javascript) {
  const wrap = parseMixed((node, input) => {
    if (!node.type.isTop) return null;
    const from = bodyStart(input.read(0, Math.min(input.length, HEAD_LIMIT)));
    if (from < 0 || from >= input.length) return null;
    return { parser: javascript.parser, overlay: [{ from, to: input.length }] };
  });
  const language = python.language.configure({ wrap }, "ipython");
  return new LanguageSupport(language, python.support);
}

const plugin = {
  id: "codemode-jupyter:highlight",
  description: "Highlights the body of %%codemode cells as JavaScript.",
  autoStart: true,
  requires: [IEditorLanguageRegistry],
  activate: (app, languages) => {
    const spec = languages.findByName("ipython");
    if (!spec || typeof spec.load !== "function") return;
    const upgrade = async (python) => {
      const javascript = await languages.getLanguage("javascript");
      if (!javascript || !javascript.support) return python;
      return withJavaScriptMagics(python, javascript.support.language);
    };
    const load = spec.load.bind(spec);
    let loading = null;
    // The registry loads a language once, through `load()`, and keeps `support`.
    spec.load = () => {
      if (!loading) {
        loading = load().then(async (python) => {
          const mixed = await upgrade(python);
          spec.support = mixed;
          return mixed;
        });
      }
      return loading;
    };
    if (spec.support) {
      // Already loaded by an earlier plugin: editors created from now on get the new one.
      const python = spec.support;
      loading = upgrade(python).then((mixed) => (spec.support = mixed));
    }
  },
};

export default plugin;
