/**
 * Module: a node of a model tree with named children, like torch.nn.Module.
 * namedModules() walks the tree with dotted names ("model.layers.0.mlp"),
 * which is what quantizeModel matches its exclude patterns against.
 */
import { rangeError, typeError } from '../errors.js';
import type { QuantizedTensor } from '../quant/qtensor.js';
import type { Tensor } from '../tensor.js';

export abstract class Module {
  readonly #children = new Map<string, Module>();

  /** Register (or replace) a child under `name`; returns it. */
  protected addModule<T extends Module>(name: string, m: T): T {
    if (typeof name !== 'string' || name === '' || name.includes('.')) throw rangeError('Module.addModule', 'name', `must be a non-empty name without dots, got '${name}'`);
    if (!(m instanceof Module)) throw typeError('Module.addModule', 'm', 'must be a Module');
    this.#children.set(name, m);
    return m;
  }

  /** Replace an existing child (used by quantizeModel); the owner's field must follow. */
  replaceChild(name: string, m: Module): void {
    if (!this.#children.has(name)) throw rangeError('Module.replaceChild', 'name', `'${name}' is not a child of this module`);
    this.#children.set(name, m);
    this.onChildReplaced(name, m);
  }

  /** Hook for subclasses that keep typed fields pointing at children. */
  protected onChildReplaced(_name: string, _m: Module): void {}

  child(name: string): Module | undefined {
    return this.#children.get(name);
  }

  *namedChildren(): IterableIterator<[string, Module]> {
    yield* this.#children.entries();
  }

  /** Every module in the tree, depth first, this one first with name prefix ('' at the root). */
  *namedModules(prefix = ''): IterableIterator<[string, Module]> {
    yield [prefix, this];
    for (const [name, m] of this.#children) yield* m.namedModules(prefix ? `${prefix}.${name}` : name);
  }

  /** Tensors this module itself holds (not its children's), by local name. */
  ownTensors(): Iterable<[string, Tensor | QuantizedTensor]> {
    return [];
  }

  /** Every tensor of the tree with its dotted name. */
  *namedTensors(prefix = ''): IterableIterator<[string, Tensor | QuantizedTensor]> {
    for (const [mname, m] of this.namedModules(prefix)) {
      for (const [tname, t] of m.ownTensors()) yield [mname ? `${mname}.${tname}` : tname, t];
    }
  }
}
