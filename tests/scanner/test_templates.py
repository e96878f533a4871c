"""Chat templates are judged by their Jinja2 syntax tree, never rendered.

Real templates of the common model families (written out here in the style their
tokenizer_config.json files use) must be quiet; templates that reach for Python internals by
any route (names built at run time, ``attr``, helper attributes, calls on anything but the known
helpers, other templates loaded) must be high. Nothing here renders a template.
"""

from __future__ import annotations

import json
import struct

import pytest

from gapsync.scanner.formats import templates
from gapsync.scanner.formats.templates import judge_template
from tests.support.samples import is_malicious, rules, scan, write

LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

LLAMA31_TOOLS = """{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\\n\\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions.\\n\\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- if tools_in_user_message and not tools is none %}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
    {%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\\n\\n' -}}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}
{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
            {{- "<|python_tag|>" + tool_call.name + ".call(" }}
            {%- for arg_name, arg_val in tool_call.arguments | items %}
                {{- arg_name + '="' + arg_val + '"' }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- endif %}
            {%- endfor %}
            {{- ")" }}
        {%- else  %}
            {{- '{"name": "' + tool_call.name + '", ' }}
            {{- '"parameters": ' }}
            {{- tool_call.arguments | tojson }}
            {{- "}" }}
        {%- endif %}
        {%- if builtin_tools is defined %}
            {{- "<|eom_id|>" }}
        {%- else %}
            {{- "<|eot_id|>" }}
        {%- endif %}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""

MISTRAL = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)

MISTRAL_TOOLS = """{%- if messages[0]["role"] == "system" %}
    {%- set system_message = messages[0]["content"] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}
{%- set user_messages = loop_messages | selectattr("role", "equalto", "user") | list %}
{%- set ns = namespace() %}
{%- set ns.index = 0 %}
{%- for message in loop_messages %}
    {%- if not (message.role == "tool" or message.role == "tool_results" or (message.tool_calls is defined and message.tool_calls is not none)) %}
        {%- if (message["role"] == "user") != (ns.index % 2 == 0) %}
            {{- raise_exception("After the optional system message, conversation roles must alternate user/assistant/user/assistant/...") }}
        {%- endif %}
        {%- set ns.index = ns.index + 1 %}
    {%- endif %}
{%- endfor %}
{{- bos_token }}
{%- for message in loop_messages %}
    {%- if message["role"] == "user" %}
        {%- if tools is not none and (message == user_messages[-1]) %}
            {{- "[AVAILABLE_TOOLS] [" }}
            {%- for tool in tools %}
                {%- set tool = tool.function %}
                {{- '{"type": "function", "function": {' }}
                {%- for key, val in tool.items() if key != "return" %}
                    {%- if val is string %}
                        {{- '"' + key + '": "' + val + '"' }}
                    {%- else %}
                        {{- '"' + key + '": ' + val|tojson }}
                    {%- endif %}
                    {%- if not loop.last %}
                        {{- ", " }}
                    {%- endif %}
                {%- endfor %}
                {{- "}}" }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- else %}
                    {{- "]" }}
                {%- endif %}
            {%- endfor %}
            {{- "[/AVAILABLE_TOOLS]" }}
        {%- endif %}
        {%- if loop.last and system_message is defined %}
            {{- "[INST] " + system_message + "\\n\\n" + message["content"] + "[/INST]" }}
        {%- else %}
            {{- "[INST] " + message["content"] + "[/INST]" }}
        {%- endif %}
    {%- elif message.tool_calls is defined and message.tool_calls is not none %}
        {{- "[TOOL_CALLS] [" }}
        {%- for tool_call in message.tool_calls %}
            {%- set out = tool_call.function|tojson %}
            {{- out[:-1] }}
            {%- if not tool_call.id is defined or tool_call.id|length != 9 %}
                {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
            {%- endif %}
            {{- ', "id": "' + tool_call.id + '"}' }}
            {%- if not loop.last %}
                {{- ", " }}
            {%- else %}
                {{- "]" + eos_token }}
            {%- endif %}
        {%- endfor %}
    {%- elif message["role"] == "assistant" %}
        {{- " " + message["content"]|trim + eos_token}}
    {%- elif message["role"] == "tool_results" or message["role"] == "tool" %}
        {%- if message.content is defined and message.content.content is defined %}
            {%- set content = message.content.content %}
        {%- else %}
            {%- set content = message.content %}
        {%- endif %}
        {{- '[TOOL_RESULTS] {"content": ' + content|string + ", " }}
        {{- '"call_id": "' + message.tool_call_id + '"}[/TOOL_RESULTS]' }}
    {%- else %}
        {{- raise_exception("Only user and assistant roles are supported, with the exception of an initial optional system message!") }}
    {%- endif %}
{%- endfor %}
"""

CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

QWEN3 = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\\n\\n' }}
    {%- endif %}
    {{- "# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object within <tool_call></tool_call> XML tags<|im_end|>\\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}
    {%- endif %}
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
        {%- if loop.index0 > ns.last_query_index %}
            {%- if loop.last or (not loop.last and reasoning_content) %}
                {{- '<|im_start|>' + message.role + '\\n<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n') }}
            {%- else %}
                {{- '<|im_start|>' + message.role + '\\n' + content }}
            {%- endif %}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\\n' + content }}
        {%- endif %}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and content) or (not loop.first) %}
                    {{- '\\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\\n\\n</think>\\n\\n' }}
    {%- endif %}
{%- endif %}
"""

GEMMA = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\\n'}}
{%- endif -%}
"""

PHI3 = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\\n' + message['content'] + "
    "'<|end|>\\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}"
    "{% elif message['role'] == 'assistant' %}{{'<|assistant|>\\n' + message['content'] + '<|end|>\\n'}}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}"
)

ZEPHYR = (
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\\n' + message['content'] + "
    "eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\\n'  + message['content'] + eos_token }}\n"
    "{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}"
)

DEEPSEEK_R1 = (
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
    "{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='') %}"
    "{%- for message in messages %}{%- if message['role'] == 'system' %}{% set ns.system_prompt = message['content'] %}"
    "{%- endif %}{%- endfor %}{{bos_token}}{{ns.system_prompt}}{%- for message in messages %}"
    "{%- if message['role'] == 'user' %}{%- set ns.is_tool = false -%}{{'<｜User｜>' + message['content']}}{%- endif %}"
    "{%- if message['role'] == 'assistant' and message['content'] is none %}{%- set ns.is_tool = false -%}"
    "{%- for tool in message['tool_calls']%}{%- if not ns.is_first %}{{'<｜Assistant｜><｜tool▁calls▁begin｜>"
    "<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + '```json' + '\\n' "
    "+ tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}{%- set ns.is_first = true -%}"
    "{%- else %}{{'\\n' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\\n' "
    "+ '```json' + '\\n' + tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}"
    "{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}{%- endfor %}{%- endif %}"
    "{%- if message['role'] == 'assistant' and message['content'] is not none %}{%- if ns.is_tool %}"
    "{{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}{%- set ns.is_tool = false -%}"
    "{%- else %}{% set content = message['content'] %}{% if '</think>' in content %}"
    "{% set content = content.split('</think>')[-1] %}{% endif %}{{'<｜Assistant｜>' + content + "
    "'<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %}{%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}"
    "{%- if ns.is_output_first %}{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + message['content'] + "
    "'<｜tool▁output▁end｜>'}}{%- set ns.is_output_first = false %}{%- else %}{{'\\n<｜tool▁output▁begin｜>' + "
    "message['content'] + '<｜tool▁output▁end｜>'}}{%- endif %}{%- endif %}{%- endfor -%}{% if ns.is_tool %}"
    "{{'<｜tool▁outputs▁end｜>'}}{% endif %}{% if add_generation_prompt and not ns.is_tool %}"
    "{{'<｜Assistant｜><think>\\n'}}{% endif %}"
)

LLAMA2 = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)

# Hermes-style tool template: a recursive macro over JSON schema, dict methods, |join, loop controls.
HERMES_TOOLS = """{%- macro json_to_python_type(json_spec) %}
{%- set basic_type_map = {"string": "str", "number": "float", "integer": "int", "boolean": "bool"} %}
{%- if basic_type_map[json_spec.type] is defined %}
    {{- basic_type_map[json_spec.type] }}
{%- elif json_spec.type == "array" %}
    {{- "list[" +  json_to_python_type(json_spec|items) + "]"}}
{%- elif json_spec.type == "object" %}
    {%- if json_spec.additionalProperties is defined %}
        {{- "dict[str, " + json_to_python_type(json_spec.additionalProperties) + ']'}}
    {%- else %}
        {{- "dict" }}
    {%- endif %}
{%- elif json_spec.type is iterable %}
    {{- "Union[" }}
    {%- for t in json_spec.type %}
      {{- json_to_python_type({"type": t}) }}
      {%- if not loop.last %}
        {{- "," }}
      {%- endif %}
    {%- endfor %}
    {{- "]" }}
{%- else %}
    {{- "Any" }}
{%- endif %}
{%- endmacro %}
{{- bos_token }}
{{- "<|im_start|>system\\nYou are a function calling AI model. <tools> " }}
{%- for tool in tools %}
    {%- if tool.function is defined %}
        {%- set tool = tool.function %}
    {%- endif %}
    {{- '{"type": "function", "function": ' }}
    {{- '{"name": "' + tool.name + '", ' }}
    {{- '"description": "' + tool.name + '(' }}
    {%- for param_name, param_fields in tool.parameters.properties|items %}
        {{- param_name + ": " + json_to_python_type(param_fields) }}
        {%- if not loop.last %}
            {{- ", " }}
        {%- endif %}
    {%- endfor %}
    {{- ")" }}
    {%- if tool.return is defined %}
        {{- " -> " + json_to_python_type(tool.return) }}
    {%- endif %}
    {{- " - " + tool.description + "\\n\\n" }}
    {%- for param_name, param_fields in tool.parameters.properties|items %}
        {%- if loop.first %}
            {{- "    Args:\\n" }}
        {%- endif %}
        {{- "        " + param_name + "(" + json_to_python_type(param_fields) + "): " + param_fields.description|trim }}
    {%- endfor %}
    {{- '", "parameters": ' }}
    {%- if tool.parameters.properties | length == 0 %}
        {{- "{}" }}
    {%- else %}
        {{- tool.parameters|tojson }}
    {%- endif %}
    {{- "}" }}
    {%- if not loop.last %}
        {{- "\\n" }}
    {%- endif %}
{%- endfor %}
{{- " </tools>" }}
{%- for message in messages %}
    {%- if message.role == "user" or message.role == "system" or (message.role == "assistant" and message.tool_calls is not defined) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- for tool_call in message.tool_calls %}
            {{- '\\n<tool_call>\\n' }}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '{' }}
            {{- '"name": "' }}
            {{- tool_call.name }}
            {{- '"' }}
            {%- if tool_call.arguments is defined %}
                {{- ', ' }}
                {{- '"arguments": ' }}
                {{- tool_call.arguments|tojson }}
            {%- endif %}
            {{- '}' }}
            {{- '\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.previtem and loop.previtem.role != "tool" %}
            {{- '<|im_start|>tool\\n' }}
        {%- endif %}
        {{- '<tool_response>\\n' }}
        {{- message.content }}
        {%- if not loop.last %}
            {{- '\\n</tool_response>\\n' }}
        {%- else %}
            {{- '\\n</tool_response>' }}
        {%- endif %}
        {%- if not loop.last and loop.nextitem.role != "tool" %}
            {{- '<|im_end|>' }}
        {%- elif loop.last %}
            {{- '<|im_end|>' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

# Qwen3-Coder style: macros with defaults, a key loop filtered with reject('in', ...), subscripts by
# the loop's key, |safe, and SmolLM-style {% generation %} and loop controls.
CODER_TOOLS = """{% macro render_extra_keys(json_dict, handled_keys) %}
    {%- if json_dict is mapping %}
        {%- for json_key in json_dict if json_key not in handled_keys %}
            {%- if json_dict[json_key] is mapping or (json_dict[json_key] is sequence and json_dict[json_key] is not string) %}
                {{- '\\n<' ~ json_key ~ '>' ~ (json_dict[json_key] | tojson | safe) ~ '</' ~ json_key ~ '>' }}
            {%- else %}
                {{-'\\n<' ~ json_key ~ '>' ~ (json_dict[json_key] | string) ~ '</' ~ json_key ~ '>' }}
            {%- endif %}
        {%- endfor %}
    {%- endif %}
{% endmacro %}
{%- set ns = namespace(found=false) %}
{%- for message in messages %}
    {%- if message.role == "system" %}
        {%- set ns.found = true %}
        {%- break %}
    {%- endif %}
{%- endfor %}
{%- if not ns.found %}{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{%- endif %}
{%- for tool in tools %}
    {%- if tool.function is defined %}{%- set tool = tool.function %}{%- endif %}
    {{- "\\n<function>\\n<name>" ~ tool.name ~ "</name>" }}
    {%- for param_name, param_fields in tool.parameters.properties|items %}
        {{- '\\n<parameter>\\n<name>' ~ param_name ~ '</name>' }}
        {%- set handled_keys = ['name', 'type', 'description'] %}
        {{- render_extra_keys(param_fields, handled_keys) }}
        {%- if param_fields.type is defined %}{{- '\\n<type>' ~ (param_fields.type | string) ~ '</type>' }}{%- endif %}
        {{- '\\n</parameter>' }}
    {%- endfor %}
    {{- render_extra_keys(tool.parameters, ['type', 'properties']) }}
{%- endfor %}
{%- for message in messages %}
    {%- if message.role == "assistant" %}
        {{- '<|im_start|>assistant\\n' }}
        {%- generation %}
        {{- message.content | trim }}
        {%- if message.tool_calls is defined and message.tool_calls|length > 0 %}
            {%- for tool_call in message.tool_calls %}
                {%- for args_name, args_value in tool_call.arguments.items() %}
                    {%- set args_value = args_value | tojson | safe if args_value is mapping or (args_value is sequence and args_value is not string) else args_value | string %}
                    {{- '<parameter=' + args_name + '>\\n' + args_value + '\\n</parameter>\\n' }}
                {%- endfor %}
            {%- endfor %}
        {%- endif %}
        {%- endgeneration %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if messages[loop.index0 - 1].role != "tool" %}{{- '<|im_start|>user\\n' }}{%- endif %}
        {{- '<tool_response>\\n' + message.content + '\\n</tool_response>\\n' }}
        {%- if loop.last or messages[loop.index0 + 1].role != "tool" %}{{- '<|im_end|>\\n' }}{%- endif %}
    {%- else %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
        {%- continue %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}
"""

# Granite style: strftime_now, |string, tojson(indent=4), documents loop, 'x' in controls.
GRANITE = """{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set system_message = "Today's Date: " + strftime_now('%B %d, %Y') + ". You are Granite." %}
    {%- if 'citations' in controls and documents %}
        {%- set system_message = system_message + " Cite the documents." %}
    {%- endif %}
    {%- set loop_messages = messages %}
{%- endif %}
{{- '<|start_of_role|>system<|end_of_role|>' + system_message + '<|end_of_text|>\\n' }}
{%- if tools %}
    {{- '<|start_of_role|>tools<|end_of_role|>' }}
    {{- tools | tojson(indent=4) }}
    {{- '<|end_of_text|>\\n' }}
{%- endif %}
{%- for document in documents %}
    {{- '<|start_of_role|>document {"document_id": "' + document['doc_id'] | string + '"}<|end_of_role|>\\n' }}
    {{- document['text'] }}{{- '<|end_of_text|>\\n' }}
{%- endfor %}
{%- for message in loop_messages %}
    {{- '<|start_of_role|>' + message['role'] + '<|end_of_role|>' + message['content'] + '<|end_of_text|>\\n' }}
    {%- if loop.last and add_generation_prompt %}
        {{- '<|start_of_role|>assistant' }}{%- if controls %}{{- ' ' + controls | tojson()}}{%- endif %}
        {{- '<|end_of_role|>' }}
    {%- endif %}
{%- endfor %}
"""

# Constructs seen in other families' templates (Command-R, Llama 4, Phi-4, MiniCPM, GPT-OSS ...).
MISC = """{%- set ns = namespace(found=false, sys='') -%}
{%- set system = messages | selectattr('role', 'equalto', 'system') | list -%}
{%- if system | length > 0 %}{% set ns.sys = system[0].content | default('', true) %}{% endif -%}
{%- set block %}{{ ns.sys | trim }}{% endset -%}
{%- with prefix = '<|' ~ 'sys' ~ '|>' %}{{ prefix ~ block }}{% endwith -%}
{%- for message in messages -%}
    {%- if message.content is not string %}
        {{- message.content | selectattr('type', 'equalto', 'text') | map(attribute='text') | join('') }}
        {{- message.content | selectattr('type', 'equalto', 'image') | list | length }}
    {%- else %}
        {{- message.content.split()[0] if message.content.split() else '' }}
        {{- message.content[1:-1] | replace('\n', ' ') | indent(2) | wordwrap(80) | center(90) }}
    {%- endif %}
    {{- loop.cycle('odd', 'even') }}{{- (messages | last).role }}{{- messages[-1]['role'] | upper }}
    {{- '{}: {}'.format(message.role, loop.index) }}
    {%- for k, v in message | dictsort %}{{ k }}={{ v | tojson(ensure_ascii=False) }}{% endfor %}
    {%- filter upper %}{{ message.role }}{% endfilter %}
{%- endfor -%}
{%- if tools is defined and tools is not none %}{{ tools | map(attribute='function.name') | join(', ') }}{% endif %}
{{- '%s tokens' | format(messages | length) }}
"""

REAL = {"misc": MISC, "llama3": LLAMA3, "llama31_tools": LLAMA31_TOOLS, "mistral": MISTRAL, "mistral_tools": MISTRAL_TOOLS,
        "chatml": CHATML, "qwen3": QWEN3, "gemma": GEMMA, "phi3": PHI3, "zephyr": ZEPHYR,
        "deepseek_r1": DEEPSEEK_R1, "llama2": LLAMA2, "hermes_tools": HERMES_TOOLS, "coder_tools": CODER_TOOLS,
        "granite": GRANITE}

ISSUE_PAYLOAD = ("{% set u='%c%c'|format(95,95) %}{% set g=namespace|attr(u~'in'~'it'~u)|attr(u~'glo'~'bals'~u) %}"
                 "{{ ((g['o'~'s']|attr('po'~'pen'))('echo x')|attr('re'~'ad'))() }}")

# Each reaches (or would reach) Python internals by another route; none is listed in the issue.
HOSTILE = {
    "issue": ISSUE_PAYLOAD,
    "dunder_chain": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "lipsum_globals": "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "cycler_init": "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "joiner_attr": "{{ joiner|attr('_' * 2 ~ 'init' ~ '_' * 2) }}",
    "self_context": "{{ self._TemplateReference__context }}",
    "namespace_attr": "{{ namespace.__init__ }}",
    "namespace_object": "{% set n = namespace %}{{ n }}",
    "range_object": "{{ range.__self__ }}",
    "dunder_key_const": "{{ messages['__class__'] }}",
    "dunder_in_get": "{{ messages.get('__class__') }}",
    "private_key": "{{ messages[0]['_TemplateReference__context'] }}",
    "built_key_var": "{% set k = '__cla' ~ 'ss__' %}{{ messages[k] }}",
    "built_key_mul": "{% set k = '_' * 2 ~ 'class' ~ '_' * 2 %}{{ messages[k] }}",
    "built_key_replace": "{% set k = 'XXclassXX'|replace('X', '_') %}{{ messages[k] }}",
    "built_key_reverse": "{% set k = 'ssalc__'|reverse %}{% set j = '__' ~ k %}{{ messages[j] }}",
    "built_key_join": "{{ messages[['__cl', 'ass__']|join] }}",
    "built_key_chain": "{% set a = b %}{% set b = c %}{% set c = 'cla' + 'ss' %}{{ messages[a] }}",
    "built_key_for": "{% for k in ['__cl' ~ 'ass__'] %}{{ messages[k] }}{% endfor %}",
    "built_key_ns": "{% set ns = namespace(k='') %}{% set ns.k = '__cl' ~ 'ass__' %}{{ messages[ns.k] }}",
    "built_key_ns_ctor": "{% set ns = namespace(k='__cl' ~ 'ass__') %}{{ messages[ns.k] }}",
    "built_key_macro": "{% macro m(k) %}{{ messages[k] }}{% endmacro %}{{ m('__cl' ~ 'ass__') }}",
    "built_key_macro_kw": "{% macro m(k='x') %}{{ messages[k] }}{% endmacro %}{{ m(k='__cl' ~ 'ass__') }}",
    "built_key_pop": "{{ messages.pop('__cl' ~ 'ass__') }}",
    "built_key_method": "{{ messages['  cls  '.strip()] }}",
    "built_key_set_block": "{% set k %}__cla{{ 'ss__' }}{% endset %}{{ messages[k] }}",
    "built_key_ns_subscript": "{% set ns = namespace(k='') %}{% set ns.k = '__cl' ~ 'ass__' %}{{ messages[ns['k']] }}",
    "built_key_default": "{% set k = nothing|default('__cl' ~ 'ass__') %}{{ messages[k] }}",
    "built_key_get_default": "{% set k = {}.get('x', '__cl' ~ 'ass__') %}{{ messages[k] }}",
    "built_key_map_replace": "{% set k = ['XXclassXX']|map('replace', 'X', '_')|first %}{{ messages[k] }}",
    "built_key_slice_step": "{{ messages['_x_xcxlxaxsxsx_x_'[::2]] }}",
    "built_key_slice_var": "{% set s = '_x_xcxlxaxsxsx_x_' %}{{ messages[s[::2]] }}",
    "built_key_dict_value": "{% set d = {'k': '__cl' ~ 'ass__'} %}{{ messages[d.k] }}",
    "built_key_list_item": "{% set l = ['__cl' ~ 'ass__'] %}{{ messages[l[0]] }}",
    "built_key_with": "{% with k = '__cl' ~ 'ass__' %}{{ messages[k] }}{% endwith %}",
    "built_key_cycle": "{% for m in messages %}{{ m[loop.cycle('__cl' ~ 'ass__')] }}{% endfor %}",
    "built_key_macro_output": "{% macro m() %}__class__{% endmacro %}{{ messages[m()] }}",
    "escaped_dunder": "{{ messages['\\x5f\\x5fclass\\x5f\\x5f'] }}",
    "groupby_built": "{{ messages|groupby('__cl' ~ 'ass__') }}",
    "sort_attribute_built": "{{ messages|sort(attribute='cl' ~ 'ass') }}",
    "filter_block_attr": "{% filter attr('x') %}y{% endfilter %}",
    "lipsum_call": "{{ lipsum() }}",
    "format_char": "{{ '%c'|format(95) }}",
    "format_computed": "{{ (x ~ 'y')|format(1) }}",
    "format_method": "{{ '{0.__class__}'.format(messages) }}",
    "format_method_built": "{{ ('{0.' ~ x ~ '}').format(messages) }}",
    "map_attr": "{{ messages|map('attr', 'x')|list }}",
    "selectattr_private": "{{ messages|selectattr('_x')|list }}",
    "map_attribute_built": "{{ messages|map(attribute='cl' ~ 'ass')|list }}",
    "call_subscript": "{{ messages[0]['content']() }}",
    "call_unknown_name": "{{ open('/etc/passwd') }}",
    "call_unknown_method": "{{ messages.__len__() }}",
    "call_data_method": "{{ messages[0].content.encode('rot13') }}",
    "call_star_kwargs": "{{ dict(**messages[0]) }}",
    "frame_attr": "{{ (x for x in y).gi_frame.f_globals }}",
    "import": "{% import 'os.html' as os %}{{ os }}",
    "from_import": "{% from 'x.html' import m %}{{ m() }}",
    "include": "{% include '/etc/passwd' %}",
    "extends": "{% extends 'base.html' %}",
    "call_block": "{% macro m() %}{{ caller() }}{% endmacro %}{% call m() %}x{% endcall %}",
    "dunder_name": "{{ __builtins__ }}",
    "unparseable": "{% if messages %}{{ x }",
    "unknown_tag": "{% do messages.append(1) %}",
    "too_deep": "{{ " + "(" * 20000 + "1" + ")" * 20000 + " }}",
    "too_large": "{# " + "x" * (templates.MAX_TEMPLATE + 1) + " #}",
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_chat_templates_are_quiet(name):
    assert judge_template(REAL[name]) == []


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_templates_are_problems(name):
    problems = judge_template(HOSTILE[name])
    assert problems, name
    assert all(p.reason for p in problems)


def test_issue_payload_names_each_route():
    reasons = " | ".join(p.reason for p in judge_template(ISSUE_PAYLOAD))
    for route in ("|format '%c%c'", "|attr", "'namespace'", "subscript key built at run time", "calls the result"):
        assert route in reasons, (route, reasons)


def test_chained_bindings_are_followed_in_linear_time():
    import time

    n = 6000
    chain = "".join(f"{{% set a{i} = a{i + 1} %}}" for i in range(n)) + f"{{% set a{n} = 'x' ~ 'y' %}}{{{{ q[a0] }}}}"
    start = time.monotonic()
    assert judge_template(chain)
    assert time.monotonic() - start < 5


def gguf_bytes(kv: dict[str, str]) -> bytes:
    out = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kv))
    for k, v in kv.items():
        kb, vb = k.encode(), v.encode()
        out += struct.pack("<Q", len(kb)) + kb + struct.pack("<I", 8) + struct.pack("<Q", len(vb)) + vb
    return out


def test_gguf_issue_payload_is_high_and_real_template_info(tmp_path):
    fs = scan(write(tmp_path, "bad.gguf", gguf_bytes({"general.name": "x", "tokenizer.chat_template": ISSUE_PAYLOAD})))
    assert "gguf.chat_template.suspicious" in rules(fs) and is_malicious(fs)
    problems = next(f for f in fs if f.rule == "gguf.chat_template.suspicious").evidence["problems"]
    assert all({"reason", "line", "code"} <= set(p) for p in problems)
    fs = scan(write(tmp_path, "ok.gguf", gguf_bytes({"tokenizer.chat_template": QWEN3,
                                                      "tokenizer.chat_template.tool_use": HERMES_TOOLS})))
    assert rules(fs) == {"gguf.chat_template"} and not is_malicious(fs)
    # a named template is judged as well as the default one
    fs = scan(write(tmp_path, "named.gguf", gguf_bytes({"tokenizer.chat_template": CHATML,
                                                         "tokenizer.chat_template.rag": HOSTILE["lipsum_globals"]})))
    assert is_malicious(fs)


def test_gguf_templates_beyond_the_budget_are_high(tmp_path):
    part = "{# " + "x" * (templates.MAX_TEMPLATE - 10) + " #}"
    kv = {f"tokenizer.chat_template.t{i}": part for i in range(3)}
    fs = scan(write(tmp_path, "many.gguf", gguf_bytes(kv)))
    assert is_malicious(fs) and any("in all" in f.message for f in fs)


@pytest.mark.parametrize("name", ["tokenizer_config.json", "chat_template.json", "config.bin"])
def test_tokenizer_config_templates(tmp_path, name):
    ok = {"bos_token": "<s>", "chat_template": GEMMA, "model_max_length": 8192}
    fs = scan(write(tmp_path, f"ok/{name}", json.dumps(ok).encode()))
    assert rules(fs) == {"json.chat_template"} and not is_malicious(fs)
    bad = dict(ok, chat_template=ISSUE_PAYLOAD)
    fs = scan(write(tmp_path, f"bad/{name}", json.dumps(bad).encode()))
    assert "json.chat_template.suspicious" in rules(fs) and is_malicious(fs)
    listed = dict(ok, chat_template=[{"name": "default", "template": CHATML},
                                     {"name": "tool_use", "template": HOSTILE["built_key_ns"]}])
    fs = scan(write(tmp_path, f"list/{name}", json.dumps(listed).encode()))
    assert is_malicious(fs)
    assert any(f.evidence.get("key") == "chat_template[tool_use]" for f in fs if f.rule.endswith(".suspicious"))
    not_text = dict(ok, chat_template={"template": CHATML})
    assert is_malicious(scan(write(tmp_path, f"odd/{name}", json.dumps(not_text).encode())))


def test_plain_json_has_no_template_finding(tmp_path):
    assert scan(write(tmp_path, "config.json", json.dumps({"hidden_size": 8, "chat_template": None}).encode())) == []


def test_chat_template_in_json_too_large_to_parse_fails_closed(tmp_path, monkeypatch):
    from gapsync.scanner.formats import jsonfiles

    monkeypatch.setattr(jsonfiles, "MAX_JSON", 4096)
    monkeypatch.setattr(jsonfiles, "CHUNK", 1000)
    vocab = {f"tok{i}": i for i in range(2000)}
    fs = scan(write(tmp_path, "vocab.json", json.dumps({"model": {"vocab": vocab}}).encode()))
    assert fs == []
    for label, key in (("plain", '"chat_template"'), ("escaped", '"chat\\u005Ftemplate"'),
                       ("escaped-c", '"\\u0063hat_template"')):
        text = json.dumps({"model": {"vocab": vocab}})[:-1] + ", " + key + ': "{{ x }}"}'
        assert json.loads(text)["chat_template"] == "{{ x }}"
        fs = scan(write(tmp_path, f"{label}/tokenizer_config.json", text.encode()))
        assert "json.chat_template.suspicious" in rules(fs) and is_malicious(fs), label
    # the key straddling two reads
    head = json.dumps({"model": {"vocab": vocab}})[:-1] + ", "
    boundary = next(4097 + 1000 * k for k in range(1000) if 4097 + 1000 * k > len(head) + 10)  # reads: 4097, then 1000s
    pad = " " * (boundary - 5 - len(head))
    fs = scan(write(tmp_path, "edge/tokenizer_config.json", (head + pad + '"chat_template": "x"}').encode()))
    assert is_malicious(fs)


def test_template_files_of_their_own(tmp_path):
    """chat_template.jinja (transformers saves templates so now): judged by scan_jinja."""
    from gapsync.scanner.base import Where
    from gapsync.scanner.formats.templates import scan_jinja

    def judged(name: str, data: bytes):
        path = write(tmp_path, name, data)
        with path.open("rb") as f:
            return scan_jinja(f, Where(str(path)))

    fs = judged("chat_template.jinja", QWEN3.encode())
    assert rules(fs) == {"template.chat_template"} and not is_malicious(fs)
    fs = judged("additional_chat_templates/tool_use.jinja", ISSUE_PAYLOAD.encode())
    assert rules(fs) == {"template.chat_template.suspicious"} and is_malicious(fs)
    assert is_malicious(judged("bad.jinja", b"{{ messages }}\xff"))
    assert is_malicious(judged("big.jinja", b"{# " + b"x" * (4 * templates.MAX_TEMPLATE) + b" #}"))
