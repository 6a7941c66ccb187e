"""Golden fixtures for @peft/models' chat templates: the byte-level BPE tokenizer of
make_tokenizer_fixtures.py with the chat special tokens added, and, for a few conversations and
templates, what transformers' apply_chat_template gives: the rendered text, the ids and (for the
templates with {% generation %} markers) the assistant token masks.

The unmarked templates reproduce the logic of the public templates in the checkpoints'
tokenizer_config.json: Qwen/Qwen2.5-0.5B-Instruct and Qwen/Qwen3-0.6B (tool branches left out),
meta-llama/Meta-Llama-3-8B-Instruct and google/gemma-2-2b-it. Each has a marked twin: the same template with {% generation %} around the
assistant content and its end-of-turn token, as TRL marks its templates. For the unmarked ones,
`prefix_consistent` says whether each assistant turn's rendering (conversation up to it) is the
start of the whole conversation's, as transformers renders them: where not, the template rewrites
earlier turns (Qwen3 does) and no turn-by-turn span exists. "chatml-blocks-marked" puts the
generation tags on lines of their own, where lstrip_blocks and trim_blocks apply to them.

run: oracle/.venv/bin/python oracle/make_chat_fixtures.py
"""
import json
import pathlib

from transformers import PreTrainedTokenizerFast

ROOT = pathlib.Path(__file__).resolve().parent.parent / "packages/models/test/fixtures"
OUT = ROOT / "chat"

QWEN25 = """{%- if messages[0]['role'] == 'system' %}
    {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
{%- else %}
    {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role + '\\n' }}{% generation %}{{- message.content + '<|im_end|>' }}{% endgeneration %}{{- '\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] | trim + '<|eot_id|>' }}{% endgeneration %}"
    "{% else %}{{ message['content'] | trim + '<|eot_id|>' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

GEMMA = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\\n' }}"
    "{% if role == 'model' %}{% generation %}{{ message['content'] | trim + '<end_of_turn>' }}{% endgeneration %}"
    "{% else %}{{ message['content'] | trim + '<end_of_turn>' }}{% endif %}{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}"
)

# Qwen/Qwen3-0.6B's template (tool branches left out): the last assistant turn after the last user
# message gets a <think> block, and the reasoning of earlier ones is dropped, so earlier turns are rewritten.
QWEN3 = """{%- if messages[0].role == 'system' %}
    {{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and message.content is string and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.content is string %}
        {%- set content = message.content %}
    {%- else %}
        {%- set content = '' %}
    {%- endif %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is string %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in content %}
                {%- set reasoning_content = content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}
                {%- set content = content.split('</think>')[-1].lstrip('\\n') %}
            {%- endif %}
        {%- endif %}
        {{- '<|im_start|>' + message.role + '\\n' }}{% generation %}
        {%- if loop.index0 > ns.last_query_index %}
            {%- if loop.last or (not loop.last and reasoning_content) %}
                {{- '<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n') }}
            {%- else %}
                {{- content }}
            {%- endif %}
        {%- else %}
            {{- content }}
        {%- endif %}
        {{- '<|im_end|>' }}{% endgeneration %}{{- '\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\\n\\n</think>\\n\\n' }}
    {%- endif %}
{%- endif %}
"""

# Generation tags as block tags on lines of their own: lstrip_blocks and trim_blocks apply to them.
CHATML_BLOCKS = """{%- for message in messages %}
{{- '<|im_start|>' + message.role + '\\n' }}
{%- if message.role == 'assistant' %}
    {% generation %}
{{ message.content }}<|im_end|>
    {% endgeneration %}

{%- else %}
{{ message.content }}<|im_end|>
{% endif %}
{%- endfor %}
"""


def unmarked(template):
    return template.replace("{% generation %}", "").replace("{% endgeneration %}", "")


TEMPLATES = {
    "qwen2.5-marked": QWEN25,
    "qwen2.5": unmarked(QWEN25),
    "llama3-marked": LLAMA3,
    "llama3": unmarked(LLAMA3),
    "gemma-marked": GEMMA,
    "gemma": unmarked(GEMMA),
    "qwen3-marked": QWEN3,
    "qwen3": unmarked(QWEN3),
    "chatml-blocks-marked": CHATML_BLOCKS,
}

CONVERSATIONS = [
    [{"role": "user", "content": "What did the jury say?"},
     {"role": "assistant", "content": "The election was conducted well."}],
    [{"role": "system", "content": "You answer briefly."},
     {"role": "user", "content": "Name a county."},
     {"role": "assistant", "content": "Fulton County."},
     {"role": "user", "content": "And a city?"},
     {"role": "assistant", "content": " Atlanta, café naïve 1961! "}],
    [{"role": "user", "content": "LoRA adapters?"},
     {"role": "assistant", "content": "<think>\nrecall\n</think>\n\nFrozen weights, few trainable ones."},
     {"role": "user", "content": "Prompts?"},
     {"role": "assistant", "content": "Learned virtual tokens."}],
]

SPECIAL = ["<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
           "<bos>", "<start_of_turn>", "<end_of_turn>"]


def prefix_consistent(tokenizer, template, messages):
    whole = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False)
    for turn, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        through = tokenizer.apply_chat_template(messages[:turn + 1], chat_template=template, tokenize=False)
        if not whole.startswith(through):
            return False
    return True


def main():
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(ROOT / "tokenizers/byte-level-bpe/tokenizer.json"),
                                        bos_token="<bos>", eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL})
    tokenizer.chat_template = QWEN25
    OUT.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(OUT)
    cases = []
    for name, template in TEMPLATES.items():
        for index, messages in enumerate(CONVERSATIONS):
            if name.startswith("gemma") and messages[0]["role"] == "system":
                continue
            case = {"template": name, "conversation": index}
            for generation_prompt in (False, True):
                text = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                                     add_generation_prompt=generation_prompt)
                key = "with_generation_prompt" if generation_prompt else "text"
                case[key] = text
            out = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=True, return_dict=True,
                                                return_assistant_tokens_mask=name.endswith("-marked"))
            case["input_ids"] = list(out["input_ids"])
            if name.endswith("-marked"):
                case["assistant_masks"] = list(out["assistant_masks"])
            else:
                case["prefix_consistent"] = prefix_consistent(tokenizer, template, messages)
            cases.append(case)
    expected = {"templates": TEMPLATES, "conversations": CONVERSATIONS, "cases": cases}
    (OUT / "expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")
    print(f"{len(cases)} cases -> {OUT}")


if __name__ == "__main__":
    main()
