from .bert import BertModel
