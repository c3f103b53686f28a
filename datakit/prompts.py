"""Prompt templates, by name. A record's meta cites the template's name and hash, so a change
of wording shows up in provenance (and in the request cache key, since the text changes)."""

from __future__ import annotations

# --- Self-Instruct (Wang et al. 2022): a numbered task list the model continues.
SELF_INSTRUCT_TASKS = "Come up with a series of diverse tasks. Each task is one instruction a person might give an assistant.\n\n{examples}\nTask {next}:"

SELF_INSTRUCT_IS_CLASSIFICATION = (
    "Can the following task be regarded as a classification task with a small, fixed set of output labels? "
    "Answer yes or no.\n\nTask: {instruction}\nAnswer:"
)

# Output-first for classification tasks: pick a label, then write an input for it, so the
# labels stay balanced instead of following the model's favourite input.
SELF_INSTRUCT_OUTPUT_FIRST = (
    "Given a classification task, first write one class label and then an input that belongs to that label.\n\n"
    "Task: Classify the sentiment of the sentence as positive or negative.\nClass label: positive\n"
    "Input: The soup was warm and the staff were lovely.\n\n"
    "Task: {instruction}\nClass label:"
)

SELF_INSTRUCT_INPUT_FIRST = (
    'Write an example for the task: an input if the task needs one (or "Input: <none>"), then the correct output.\n\n'
    "Task: Convert the temperature to Fahrenheit.\nInput: 20 degrees Celsius\nOutput: 68 degrees Fahrenheit.\n\n"
    "Task: Give three tips for sleeping well.\nInput: <none>\n"
    "Output: Keep a regular bedtime, avoid screens for the last hour, and keep the room cool.\n\n"
    "Task: {instruction}\nInput:"
)

# --- Evol-Instruct (Xu et al. 2023, WizardLM): in-depth and in-breadth rewrites.
EVOL_DEPTH = (
    "I want you to act as a prompt rewriter. Rewrite the given prompt into a more complex version that "
    "a capable AI assistant still finds reasonable and that a human can understand and answer. "
    "Keep any table or code in the given prompt. {method} "
    "The rewritten prompt may add at most 10 to 20 words to the given prompt. "
    "Answer with the rewritten prompt only.\n\n"
    "#Given Prompt#:\n{instruction}\n\n#Rewritten Prompt#:\n"
)
EVOL_METHODS = {
    "add_constraints": "Add one more constraint or requirement to the prompt.",
    "deepen": "If the prompt asks about a specific issue, increase the depth and breadth of the inquiry.",
    "concretize": "Replace general concepts with more specific ones.",
    "increase_reasoning": "If the prompt can be solved with a few simple thinking steps, rewrite it to explicitly request multiple-step reasoning.",
    "complicate_input": "Add complex input data to the prompt, such as a table, a code snippet or a formula, that the task must use.",
}
EVOL_BREADTH = (
    "I want you to act as a prompt creator. Draw inspiration from the given prompt to create a brand new prompt. "
    "The new prompt belongs to the same domain but is rarer, and has about the same length and difficulty. "
    "Answer with the new prompt only.\n\n#Given Prompt#:\n{instruction}\n\n#Created Prompt#:\n"
)
EVOL_EQUAL = (
    "Here are two instructions to an AI assistant. Are they equal: same constraints and requirements, "
    "same depth and breadth of inquiry? Answer equal or not_equal.\n\n"
    "First instruction: {a}\n\nSecond instruction: {b}\n\nAnswer:"
)
# Words of the evolution prompt itself; an evolved instruction that repeats them copied the template.
EVOL_TEMPLATE_WORDS = (
    "#given prompt#",
    "#rewritten prompt#",
    "#created prompt#",
    "given prompt",
    "rewritten prompt",
    "created prompt",
)

# --- Augment: same task, new words.
AUGMENT = (
    "Rephrase the instruction below so that it asks for exactly the same thing in different words. "
    "Do not add or remove any requirement. Answer with the rephrased instruction only.\n\n"
    "Instruction: {instruction}\n\nRephrased instruction:"
)

# --- Critique and revise (constitutional style).
CRITIQUE = (
    "Here is a request and an assistant's response. Point out every way the response goes against this principle:\n"
    "{principle}\n\nRequest: {prompt}\n\nResponse: {response}\n\nCritique:"
)
REVISE = (
    "Rewrite the response so that it fully follows the principle and answers the critique, "
    "keeping whatever was helpful. Answer with the rewritten response only.\n\n"
    "Principle: {principle}\n\nRequest: {prompt}\n\nResponse: {response}\n\nCritique: {critique}\n\nRewritten response:"
)
DEFAULT_PRINCIPLES = (
    "The response should be helpful, honest and harmless: it must not help with dangerous or illegal acts.",
    "The response should answer what was asked, accurately, without making up facts.",
    "The response should refuse politely, with a short reason, only when the request is harmful.",
)


def template_text(name: str) -> str:
    return globals()[name]
